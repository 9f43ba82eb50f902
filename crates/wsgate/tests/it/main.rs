//! Integration tests: the real `wsgate` binary, real sockets on 127.0.0.1:0, real
//! clients. One test binary (cargo builds it once); modules by feature.

#![allow(clippy::unwrap_used)]

mod support;
mod tt;

mod ai;
mod api_hostile;
mod bounds;
mod browser_guard;
mod cli;
mod connect;
mod control;
mod crash;
mod dashboard;
mod fallback;
mod faults;
mod first_hour;
mod history;
mod hostile;
mod instances;
mod intercept;
mod interop_clients;
mod interop_servers;
mod master;
mod mock;
mod outbound;
mod proxy;
mod relay;
mod replay;
mod routes;
mod rules;
mod shutdown;
mod third_party;
mod tls;
mod transforms;
