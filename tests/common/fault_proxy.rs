//! A TCP proxy between the tool and a server on a free loopback port, injecting the
//! faults a network does: a connection cut after some bytes, a connection that stops
//! answering, a port that refuses connections for a while. Plain threads, no async:
//! it must keep working whatever the runtime under test does.
//!
//! Bytes are counted from the server to the client, across all connections, since
//! the fault was armed (the driver's monitor and its readers share the budget), so a
//! fault fires part way through the first large read, wherever it lands.
//!
//! "Reset" here is an abrupt close of both sockets in the middle of a reply (the
//! standard library cannot set `SO_LINGER` 0 for a true RST); the driver sees the
//! same thing as a reset: a reply cut short ("unexpected end of file").

#![allow(dead_code)] // each test binary uses a different part of the proxy

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the proxy does to the traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Pass everything through.
    None,
    /// Close the connection carrying the byte that takes the count past `bytes`,
    /// then count again from zero; `times` faults in all (`None`: for ever).
    ResetAfter {
        /// Server-to-client bytes between two faults.
        bytes: u64,
        /// How many connections are cut; `None` cuts one every `bytes` for ever.
        times: Option<u32>,
    },
    /// After `bytes`, every connection open at that moment stops forwarding in both
    /// directions (it stays open, silent, until the proxy is dropped), once; new
    /// connections pass. Longer than any socket or heartbeat timeout.
    StallAfter {
        /// Server-to-client bytes before the stall.
        bytes: u64,
    },
    /// Close every new connection at once, until `until`.
    RefuseUntil {
        /// When connections are accepted again.
        until: Instant,
    },
}

#[derive(Debug)]
struct Armed {
    fault: Fault,
    counted: u64,
}

struct Connection {
    client: TcpStream,
    server: TcpStream,
    stalled: AtomicBool,
}

impl Connection {
    fn cut(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

struct State {
    armed: Mutex<Armed>,
    connections: Mutex<Vec<Arc<Connection>>>,
    stop: AtomicBool,
    resets: AtomicU32,
    stalls: AtomicU32,
    refusals: AtomicU32,
}

/// A running proxy; stopped (every connection closed) when dropped.
pub struct FaultProxy {
    /// The loopback port it listens on.
    pub port: u16,
    state: Arc<State>,
    acceptor: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `127.0.0.1:upstream`, with `fault`.
    pub fn start(upstream: u16, fault: Fault) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(State {
            armed: Mutex::new(Armed { fault, counted: 0 }),
            connections: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            resets: AtomicU32::new(0),
            stalls: AtomicU32::new(0),
            refusals: AtomicU32::new(0),
        });
        let acceptor = {
            let state = state.clone();
            std::thread::spawn(move || accept(listener, upstream, state))
        };
        FaultProxy { port, state, acceptor: Some(acceptor) }
    }

    /// Replaces the fault (counting bytes from zero again).
    pub fn set(&self, fault: Fault) {
        *self.state.armed.lock().unwrap() = Armed { fault, counted: 0 };
    }

    /// A URI through this proxy that fails fast when it cannot get through.
    pub fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}/?directConnection=true&serverSelectionTimeoutMS=3000", self.port)
    }

    /// Connections cut so far.
    pub fn resets(&self) -> u32 {
        self.state.resets.load(Ordering::SeqCst)
    }

    /// Connections stalled so far.
    pub fn stalls(&self) -> u32 {
        self.state.stalls.load(Ordering::SeqCst)
    }

    /// Connections refused so far.
    pub fn refusals(&self) -> u32 {
        self.state.refusals.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        for connection in self.state.connections.lock().unwrap().drain(..) {
            connection.cut();
        }
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept(listener: TcpListener, upstream: u16, state: Arc<State>) {
    while !state.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => continue,
        };
        let refusing = matches!(state.armed.lock().unwrap().fault, Fault::RefuseUntil { until } if Instant::now() < until);
        if refusing {
            state.refusals.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        client.set_nonblocking(false).unwrap();
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let connection = Arc::new(Connection { client, server, stalled: AtomicBool::new(false) });
        state.connections.lock().unwrap().push(connection.clone());
        for to_client in [false, true] {
            let (state, connection) = (state.clone(), connection.clone());
            std::thread::spawn(move || pump(&state, &connection, to_client));
        }
    }
}

/// Copies one direction of a connection, applying the fault to server-to-client bytes.
fn pump(state: &State, connection: &Arc<Connection>, to_client: bool) {
    let (mut from, mut to) = if to_client {
        (connection.server.try_clone().unwrap(), connection.client.try_clone().unwrap())
    } else {
        (connection.client.try_clone().unwrap(), connection.server.try_clone().unwrap())
    };
    from.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buffer = vec![0u8; 16 << 10];
    loop {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        if connection.stalled.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let n = match from.read(&mut buffer) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => continue,
            Err(_) => {
                connection.cut();
                return;
            }
        };
        if to_client && !forward_allowed(state, connection, n as u64) {
            continue;
        }
        if to.write_all(&buffer[..n]).is_err() {
            connection.cut();
            return;
        }
    }
}

/// Counts `n` bytes towards the armed fault; false when the fault fired on them (the
/// connection is then cut or stalled, and the bytes are not forwarded).
fn forward_allowed(state: &State, connection: &Arc<Connection>, n: u64) -> bool {
    let mut armed = state.armed.lock().unwrap();
    armed.counted += n;
    match armed.fault {
        Fault::ResetAfter { bytes, times } if armed.counted > bytes => {
            armed.counted = 0;
            armed.fault = match times {
                Some(1) => Fault::None,
                Some(left) => Fault::ResetAfter { bytes, times: Some(left - 1) },
                None => armed.fault,
            };
            state.resets.fetch_add(1, Ordering::SeqCst);
            connection.cut();
            false
        }
        Fault::StallAfter { bytes } if armed.counted > bytes => {
            armed.fault = Fault::None;
            for open in state.connections.lock().unwrap().iter() {
                open.stalled.store(true, Ordering::SeqCst);
                state.stalls.fetch_add(1, Ordering::SeqCst);
            }
            false
        }
        _ => true,
    }
}
