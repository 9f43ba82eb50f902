// The dashboard's entry: a hash router over its views. Each view gets the main
// element and returns a function that stops what it started (its live stream).

import { connectView } from './connect.js';
import { historyView } from './history.js';
import { interceptView } from './intercept.js';
import { overviewView } from './overview.js';
import { sessionView } from './session.js';
import { sessionsView } from './sessions.js';

const main = document.getElementById('main');
const link = document.getElementById('link');
let stop = null;

function setLink(up) {
  link.textContent = up ? 'live' : 'reconnecting…';
  link.classList.toggle('down', !up);
}

function route() {
  stop?.();
  // Views with a live stream say how it is; the others have none.
  link.textContent = '';
  const hash = location.hash || '#/sessions';
  const session = hash.match(/^#\/session\/([0-9a-fA-F-]{36})$/);
  for (const a of document.querySelectorAll('nav a')) {
    if (hash.startsWith(a.getAttribute('href'))) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (session) stop = sessionView(main, setLink, session[1]);
  else if (hash === '#/history') stop = historyView(main);
  else if (hash === '#/connect') stop = connectView(main);
  else if (hash === '#/overview') stop = overviewView(main);
  else if (hash === '#/intercept') stop = interceptView(main);
  else stop = sessionsView(main, setLink);
  main.focus({ preventScroll: true });
}

window.addEventListener('hashchange', route);
route();
