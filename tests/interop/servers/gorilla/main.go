// Echo server on Go gorilla/websocket for wsgate's client-role interop tests
// (crates/wsgate/tests/it/interop_servers.rs, docs/interop.md). The test builds it
// against Debian's package, GOPATH mode:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o OUT ./tests/interop/servers/gorilla
//
// Same stdout protocol as py_websockets.py: JSON lines `ready` (with the port), then
// per connection `open`, `message`, `close`, `end`. Echoes text as text and binary as
// binary, answers a close frame with the same code and reason.
package main

import (
	"encoding/hex"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

const shown = 1024

var (
	outMu sync.Mutex
	out   = json.NewEncoder(os.Stdout)
	conns int64
)

// report writes one JSON line; connections run concurrently, lines must not mix.
func report(fields map[string]interface{}) {
	outMu.Lock()
	defer outMu.Unlock()
	_ = out.Encode(fields)
}

var upgrader = websocket.Upgrader{
	// Picks the first of these the client offers; none offered or known: none.
	Subprotocols: []string{"wsgate.v1", "wsgate.v2"},
	// CheckOrigin left at gorilla's default (same origin, or no Origin header):
	// wsgate sends none of its own, and a strict default is what servers run.
}

func serve(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		// Upgrade has answered the client with the error status already.
		report(map[string]interface{}{"event": "refused", "path": r.URL.RequestURI(), "error": err.Error()})
		return
	}
	defer c.Close()
	conn := atomic.AddInt64(&conns, 1)
	var sub interface{}
	if p := c.Subprotocol(); p != "" {
		sub = p
	}
	report(map[string]interface{}{"event": "open", "conn": conn, "path": r.URL.RequestURI(), "subprotocol": sub})
	// gorilla's own close handler answers with the code but drops the reason.
	c.SetCloseHandler(func(code int, text string) error {
		report(map[string]interface{}{"event": "close", "conn": conn, "code": code, "reason": text})
		msg := websocket.FormatCloseMessage(code, text)
		_ = c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(5*time.Second))
		return nil
	})
	for {
		kind, data, err := c.ReadMessage()
		if err != nil {
			if _, closed := err.(*websocket.CloseError); !closed {
				report(map[string]interface{}{"event": "error", "conn": conn, "message": err.Error()})
			}
			break
		}
		fields := map[string]interface{}{"event": "message", "conn": conn, "size": len(data)}
		if kind == websocket.TextMessage {
			fields["type"] = "text"
			if len(data) <= shown {
				fields["text"] = string(data)
			}
		} else {
			fields["type"] = "binary"
			if len(data) <= shown {
				fields["hex"] = hex.EncodeToString(data)
			}
		}
		report(fields)
		if err := c.WriteMessage(kind, data); err != nil {
			break
		}
	}
	report(map[string]interface{}{"event": "end", "conn": conn})
}

func main() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		report(map[string]interface{}{"event": "error", "message": err.Error()})
		os.Exit(1)
	}
	report(map[string]interface{}{"event": "ready", "port": ln.Addr().(*net.TCPAddr).Port})
	if err := http.Serve(ln, http.HandlerFunc(serve)); err != nil {
		report(map[string]interface{}{"event": "error", "message": err.Error()})
		os.Exit(1)
	}
}
