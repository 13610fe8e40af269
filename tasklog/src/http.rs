//! Serving HTTP within the process's file descriptors.
//!
//! `axum::serve` keeps every connection as long as its client does: with the
//! common limit of 1,024 open files, a thousand idle keep-alive connections
//! made `accept` fail and every new client time out. Here:
//! - the soft `RLIMIT_NOFILE` is raised to the hard limit at start;
//! - each listener serves at most [`Limits::max_connections`] at once (kept
//!   below the descriptor limit); a new client past it closes the connection
//!   idle the longest, or, when every one is busy, gets 503 at once;
//! - a connection idle for [`Limits::idle_timeout`] is closed, and so is one
//!   that takes longer than that to send a request's head (slowloris) or body;
//! - `accept` failing for want of descriptors frees an idle connection and
//!   goes on, instead of sleeping a second per failure.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tower::ServiceExt;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// Descriptors kept out of the connection budget: database pools, listeners,
/// files, the projectors' connections.
const RESERVED_FDS: u64 = 256;
/// How long a refused connection is drained before it is closed.
const REFUSED_LINGER: Duration = Duration::from_millis(500);

/// How one listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once.
    pub max_connections: usize,
    /// A connection without a request in flight for this long is closed; a
    /// request's head and body must each arrive within it.
    pub idle_timeout: Duration,
}

/// Raises the soft limit on open files to the hard limit; returns the soft
/// limit in force.
pub fn raise_fd_limit() -> u64 {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return 1024;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit.rlim_cur = limit.rlim_max;
                }
            }
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 on every unix
        let soft = limit.rlim_cur as u64;
        soft
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}

/// `configured`, or less when the process's descriptors cannot hold it for
/// each of the two APIs one process may serve.
pub fn connection_budget(configured: usize) -> usize {
    let fds = raise_fd_limit();
    let fit = (fds.saturating_sub(RESERVED_FDS) / 2).max(16) as usize;
    if configured > fit {
        tracing::warn!(
            configured,
            open_files_limit = fds,
            using = fit,
            "fewer HTTP connections than configured fit in the open-files limit"
        );
    }
    configured.min(fit)
}

/// One connection, as the accept loop sees it.
struct Conn {
    id: u64,
    in_flight: AtomicUsize,
    /// Microseconds since the registry's start at the last request's start or end.
    last_active: AtomicU64,
    closing: AtomicBool,
    close: Notify,
}

struct Registry {
    start: Instant,
    next_id: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    /// Connections in `conns` not closing.
    open: AtomicUsize,
}

impl Registry {
    fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Connections not already on their way out.
    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Marks `conn` as on its way out (once).
    fn closing(&self, conn: &Conn) {
        if !conn.closing.swap(true, Ordering::Relaxed) {
            self.open.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// A new connection, counted from now on.
    fn register(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.now_us()),
            closing: AtomicBool::new(false),
            close: Notify::new(),
        });
        self.conns
            .lock()
            .expect("registry lock")
            .insert(id, conn.clone());
        self.open.fetch_add(1, Ordering::Relaxed);
        (id, conn)
    }

    /// Asks the connection idle the longest to close; false when every one is busy.
    fn close_oldest_idle(&self) -> bool {
        let conns = self.conns.lock().expect("registry lock");
        let oldest = conns
            .values()
            .filter(|c| {
                c.in_flight.load(Ordering::Relaxed) == 0 && !c.closing.load(Ordering::Relaxed)
            })
            .min_by_key(|c| (c.last_active.load(Ordering::Relaxed), c.id));
        match oldest {
            Some(c) => {
                self.closing(c);
                c.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in flight on its connection until dropped.
struct InFlight(Arc<Conn>, Arc<Registry>);

impl InFlight {
    fn begin(conn: &Arc<Conn>, registry: &Arc<Registry>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        conn.last_active.store(registry.now_us(), Ordering::Relaxed);
        Self(conn.clone(), registry.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_active.store(self.1.now_us(), Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` completes,
/// then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let router = router.layer(RequestBodyTimeoutLayer::new(limits.idle_timeout));
    let registry = Arc::new(Registry {
        start: Instant::now(),
        next_id: AtomicU64::new(0),
        conns: Mutex::new(HashMap::new()),
        open: AtomicUsize::new(0),
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_per_connection(&e) => continue,
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE) or memory: free one, go on.
                tracing::warn!(error = %e, "accept failed");
                registry.close_oldest_idle();
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if registry.open() >= limits.max_connections && !registry.close_oldest_idle() {
            refuse(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let (id, conn) = registry.register();
        tokio::spawn(connection(
            stream,
            id,
            conn,
            router.clone(),
            limits,
            registry.clone(),
            stop_rx.clone(),
            done_rx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Errors of one connection that `accept` reports; the listener is fine.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Every connection is busy: say so at once, with the same problem body as
/// any 503, rather than let the client wait.
fn refuse(mut stream: TcpStream) {
    static ANSWER: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let answer = ANSWER.get_or_init(|| {
        let body =
            tasklog_http::ApiError::Unavailable("every connection is busy; retry shortly".into())
                .problem_json();
        format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\n\
             retry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    tokio::spawn(async move {
        if stream.write_all(answer).await.is_err() {
            return;
        }
        let _ = stream.shutdown().await;
        // A lingering close: closing with the request unread would reset the
        // connection, and a reset can destroy the answer before it is read.
        let mut unread = [0u8; 1024];
        let _ = tokio::time::timeout(REFUSED_LINGER, async {
            while matches!(stream.read(&mut unread).await, Ok(n) if n > 0) {}
        })
        .await;
    });
}

#[allow(clippy::too_many_arguments)]
async fn connection(
    stream: TcpStream,
    id: u64,
    conn: Arc<Conn>,
    router: Router,
    limits: Limits,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
    _done: watch::Receiver<()>,
) {
    let service = {
        let (conn, registry) = (conn.clone(), registry.clone());
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let in_flight = InFlight::begin(&conn, &registry);
            let response = router.clone().oneshot(req.map(Body::new));
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        })
    };
    let serving = http1::Builder::new()
        .timer(TokioTimer::new())
        // Also bounds a keep-alive connection's wait for its next request.
        .header_read_timeout(limits.idle_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    let mut serving = std::pin::pin!(serving);
    let mut shutting_down = false;
    loop {
        let idle_since = conn.last_active.load(Ordering::Relaxed);
        let idle_deadline = if conn.in_flight.load(Ordering::Relaxed) == 0 {
            registry.start + Duration::from_micros(idle_since) + limits.idle_timeout
        } else {
            Instant::now() + limits.idle_timeout
        };
        tokio::select! {
            result = serving.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended");
                }
                break;
            }
            _ = conn.close.notified(), if !shutting_down => {
                shutting_down = true;
                serving.as_mut().graceful_shutdown();
            }
            _ = stop.changed(), if !shutting_down => {
                shutting_down = true;
                serving.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep_until(idle_deadline.into()) => {
                let idle = conn.in_flight.load(Ordering::Relaxed) == 0
                    && conn.last_active.load(Ordering::Relaxed) == idle_since;
                if idle && !shutting_down {
                    shutting_down = true;
                    registry.closing(&conn);
                    serving.as_mut().graceful_shutdown();
                } else if idle {
                    // Asked to close and still not gone after a whole idle
                    // period: drop it.
                    break;
                }
            }
        }
    }
    registry.closing(&conn);
    registry.conns.lock().expect("registry lock").remove(&id);
}
