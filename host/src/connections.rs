//! Serving HTTP connections under limits, so that idle, slow and numerous connections cannot
//! take the node's file descriptors or memory from everyone else:
//!
//! - **caps**: open connections in total (`max_connections`, derived from the process's
//!   open-file limit unless set) and per client address (`max_connections_per_address`; the
//!   peer address, an IPv6 /64 counting as one). On plain HTTP a connection over a cap is
//!   answered with a fixed `429 too_many_connections` (per address) or `503 server_busy` (in
//!   total) problem and `retry-after: 1` once its request head has arrived (or after 1 s),
//!   and closed; while 32 such answers are pending, further ones are closed at once. Over
//!   TLS it is closed before the handshake. A connection counts until its socket closes,
//!   WebSockets included (the permit lives inside the stream an upgrade takes over).
//! - **timeouts**: a new connection must send its first request's headers within
//!   `http_header_timeout_seconds`, and each later request its headers within that time of
//!   its first byte (slowloris); a keep-alive connection waits at most
//!   `http_idle_timeout_seconds` for its next request (hyper's header timer, which starts when
//!   the previous response is sent); a request's body must arrive within
//!   `http_body_timeout_seconds` of the server starting to read it, or the request is answered `408
//!   request_timeout` (the API maps it, see [`BodyDeadline`]). Timeouts close the connection
//!   without an answer, as nothing has been asked.
//!
//! hyper's HTTP/1 builder serves each connection (DMS speaks HTTP/1.1 only, TLS included),
//! not hyper-util's auto builder: the auto builder reads the first bytes to tell HTTP/2 from
//! HTTP/1 with no timer running, so a client that sends nothing would never be closed.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode};
use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

use crate::config::{Config, ConfigError};

/// Descriptors kept for everything but client connections, beyond the database pool, the
/// deliveries and the answers over a cap: standard streams, the runtime, the listener,
/// Redis, files being read.
const RESERVE_FIXED: u64 = 64;

/// Answers to connections over a cap in flight at once; beyond that they are closed at once.
const SHEDDING_AT_ONCE: usize = 32;

/// How long a connection over a cap has to send its request head, and then to take the
/// answer, before it is closed.
const SHED_WAIT: Duration = Duration::from_secs(1);

/// Fewest client connections worth serving; a smaller budget is a misconfiguration.
const MIN_CONNECTIONS: u64 = 16;

/// The connection limits in force, resolved from the configuration and the descriptor limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Open connections at once.
    pub max_total: usize,
    /// Open connections at once from one client address (`None`: no cap).
    pub max_per_address: Option<usize>,
    /// Time to send a request's headers.
    pub header_timeout: Duration,
    /// Time a keep-alive connection waits for its next request.
    pub idle_timeout: Duration,
    /// Time a request's body has to arrive, from when the server starts reading it.
    pub body_timeout: Duration,
    /// The process's open-file limit when the settings were resolved.
    pub open_file_limit: u64,
}

impl Settings {
    /// The limits `config` asks for. Raises the soft open-file limit to the hard limit first,
    /// as servers do; `max_connections = 0` takes what that limit leaves after a reserve for
    /// the database pool, the deliveries in flight and the process itself, and a larger
    /// explicit value is refused: a cap the process cannot reach would not stop
    /// `Too many open files`.
    pub fn resolve(config: &Config) -> Result<Self, ConfigError> {
        let open_file_limit = raise_open_file_limit();
        let deliveries = if config.worker_enabled {
            u64::from(config.dispatch_concurrency)
        } else {
            0
        };
        // SQLite keeps three files per connection (database, WAL, shared memory).
        let reserve = RESERVE_FIXED
            + SHEDDING_AT_ONCE as u64
            + 3 * u64::from(config.db_max_connections)
            + deliveries;
        let budget = open_file_limit.saturating_sub(reserve);
        let invalid = |reason: String| ConfigError::Invalid {
            setting: "DMS_MAX_CONNECTIONS",
            reason,
        };
        if budget < MIN_CONNECTIONS {
            return Err(invalid(format!(
                "the open-file limit ({open_file_limit}) leaves {budget} descriptors for connections after {reserve} for the database pool, the deliveries in flight and the process; raise it (ulimit -n, LimitNOFILE=) or lower DMS_DB_MAX_CONNECTIONS or DMS_DISPATCH_CONCURRENCY"
            )));
        }
        let max_total = match u64::from(config.max_connections) {
            0 => budget,
            wanted if wanted > budget => {
                return Err(invalid(format!(
                    "it is {wanted}, but the open-file limit ({open_file_limit}) allows at most {budget} after {reserve} for the database pool, the deliveries in flight and the process; raise the limit (ulimit -n, LimitNOFILE=), or set 0 to derive the cap from it"
                )));
            }
            wanted => wanted,
        };
        Ok(Self {
            max_total: usize::try_from(max_total).unwrap_or(usize::MAX),
            max_per_address: match config.max_connections_per_address {
                0 => None,
                cap => Some(cap as usize),
            },
            header_timeout: Duration::from_secs(config.http_header_timeout_seconds),
            idle_timeout: Duration::from_secs(config.http_idle_timeout_seconds),
            body_timeout: Duration::from_secs(config.http_body_timeout_seconds),
            open_file_limit,
        })
    }
}

/// Raises the soft open-file limit to the hard one (one descriptor per connection); the limit
/// in force afterwards.
fn raise_open_file_limit() -> u64 {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if soft < hard {
        // An unlimited hard limit is still bounded by the kernel's nr_open (2^20 by default).
        let target = if hard == RLIM_INFINITY { 1 << 20 } else { hard };
        if let Err(error) = setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            tracing::warn!(
                message = "Could not raise the open-file limit.",
                soft,
                hard,
                %error
            );
        }
    }
    getrlimit(Resource::RLIMIT_NOFILE).map_or(soft, |(soft, _)| soft)
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node holds `max_connections`.
    Total,
    /// The client's address holds `max_connections_per_address`.
    PerAddress,
}

/// The address a per-address cap counts: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its /64,
/// the block one subscriber usually gets.
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
        v4 => v4,
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// The open connections of this node, by client address.
pub struct Admission {
    max_total: usize,
    max_per_address: Option<usize>,
    counts: Mutex<Counts>,
    /// Woken when the last connection closes.
    drained: Notify,
    refusals: RefusalLog,
}

impl std::fmt::Debug for Admission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admission")
            .field("max_total", &self.max_total)
            .field("max_per_address", &self.max_per_address)
            .field("open", &self.open())
            .finish()
    }
}

/// A connection's place under the caps; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    admission: Arc<Admission>,
    key: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.admission.counts.lock().expect("admission lock");
        counts.total -= 1;
        if let Some(count) = counts.per_address.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.per_address.remove(&self.key);
            }
        }
        if counts.total == 0 {
            self.admission.drained.notify_waiters();
        }
    }
}

impl Admission {
    /// Caps from `settings`.
    pub fn new(settings: &Settings) -> Arc<Self> {
        Arc::new(Self {
            max_total: settings.max_total,
            max_per_address: settings.max_per_address,
            counts: Mutex::new(Counts::default()),
            drained: Notify::new(),
            refusals: RefusalLog::default(),
        })
    }

    /// A place for a connection from `peer`, or why there is none.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        let key = address_key(peer);
        let refusal = {
            let mut counts = self.counts.lock().expect("admission lock");
            let from_peer = counts.per_address.get(&key).copied().unwrap_or(0);
            if counts.total >= self.max_total {
                Some(Refusal::Total)
            } else if self.max_per_address.is_some_and(|cap| from_peer >= cap) {
                Some(Refusal::PerAddress)
            } else {
                counts.total += 1;
                *counts.per_address.entry(key).or_default() += 1;
                None
            }
        };
        match refusal {
            None => Ok(Permit {
                admission: self.clone(),
                key,
            }),
            Some(refusal) => {
                self.refusals.note(refusal, peer, self);
                Err(refusal)
            }
        }
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.counts.lock().expect("admission lock").total
    }

    /// Waits until no connection is open.
    async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Logs refusals at most once a minute (with how many there were), so a flood of connections
/// cannot flood the log too.
#[derive(Default)]
struct RefusalLog {
    last_ms: AtomicU64,
    since: AtomicU64,
}

impl RefusalLog {
    fn note(&self, refusal: Refusal, peer: IpAddr, admission: &Admission) {
        tracing::debug!(message = "Connection refused.", ?refusal, %peer);
        let count = self.since.fetch_add(1, Ordering::Relaxed) + 1;
        let now_ms = crate::clock::Clock::System.now_ms();
        let last = self.last_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= 60_000
            && self
                .last_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.since.store(0, Ordering::Relaxed);
            tracing::warn!(
                message = "Refusing connections over the caps.",
                refused = count,
                last_refusal = ?refusal,
                %peer,
                max_connections = admission.max_total,
                max_connections_per_address = ?admission.max_per_address,
            );
        }
    }
}

/// The fixed answers to a plain-HTTP connection over a cap (given before the request is
/// parsed, so they carry no request id).
#[derive(Debug, Clone)]
pub struct Shed {
    per_address: Bytes,
    total: Bytes,
    in_flight: Arc<AtomicUsize>,
}

/// One of the [`SHEDDING_AT_ONCE`] answers in flight.
struct Shedding(Arc<AtomicUsize>);

impl Drop for Shedding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shed {
    /// Answers `per_address` to a connection over the per-address cap and `total` to one over
    /// the server's: each a whole HTTP/1.1 response that ends the connection (the API renders
    /// them as problems).
    pub fn new(per_address: Bytes, total: Bytes) -> Self {
        Self {
            per_address,
            total,
            in_flight: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Answers `refusal` on `stream` and closes it; at once, unanswered, when
    /// [`SHEDDING_AT_ONCE`] answers are in flight.
    fn answer(&self, mut stream: TcpStream, refusal: Refusal) {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= SHEDDING_AT_ONCE {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let slot = Shedding(self.in_flight.clone());
        let answer = match refusal {
            Refusal::PerAddress => self.per_address.clone(),
            Refusal::Total => self.total.clone(),
        };
        tokio::spawn(async move {
            let _slot = slot;
            // HTTP clients take an answer to the request they sent, not bytes that came
            // before it (hyper's client calls those an unexpected message): read the head.
            let _ = tokio::time::timeout(SHED_WAIT, read_head(&mut stream)).await;
            let _ = tokio::time::timeout(SHED_WAIT, async {
                stream.write_all(&answer).await?;
                stream.shutdown().await
            })
            .await;
            // Closing with unread input resets the connection, and the client could lose the
            // answer: read what it still sends until it closes, briefly.
            let _ = tokio::time::timeout(SHED_WAIT, drain(&mut stream)).await;
        });
    }
}

/// Reads until the end of a request head (or 8 KiB, or the end of the stream).
async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while head.len() < 8 << 10 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
        if head.windows(4).any(|window| window == b"\r\n\r\n") {
            return;
        }
    }
}

/// Reads and discards until the end of the stream (at most 64 KiB).
async fn drain(stream: &mut TcpStream) {
    let mut buffer = [0u8; 4096];
    let mut left = 64usize << 10;
    while left > 0 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => left = left.saturating_sub(read),
        }
    }
}

/// A connection the listener admitted.
pub struct Accepted<I> {
    /// The stream (TCP, or TLS over it).
    pub io: I,
    /// The client's address.
    pub peer: SocketAddr,
    /// Its place under the caps.
    pub permit: Permit,
}

/// Where connections come from: a listener that admits each under the caps.
pub trait Accept: Send + 'static {
    /// The stream of a connection.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;

    /// The next admitted connection; refusals and accept errors are handled inside.
    fn accept(&mut self) -> impl Future<Output = Accepted<Self::Io>> + Send;
}

/// Plain TCP connections, answered per [`Shed`] when over a cap.
pub struct PlainListener {
    listener: TcpListener,
    admission: Arc<Admission>,
    shed: Shed,
}

impl PlainListener {
    /// Admits connections from `listener` under `admission`'s caps.
    pub fn new(listener: TcpListener, admission: Arc<Admission>, shed: Shed) -> Self {
        Self {
            listener,
            admission,
            shed,
        }
    }
}

impl Accept for PlainListener {
    type Io = TcpStream;

    async fn accept(&mut self) -> Accepted<TcpStream> {
        loop {
            let (stream, peer) = accept_tcp(&self.listener).await;
            match self.admission.admit(peer.ip()) {
                Ok(permit) => {
                    let _ = stream.set_nodelay(true);
                    return Accepted {
                        io: stream,
                        peer,
                        permit,
                    };
                }
                Err(refusal) => self.shed.answer(stream, refusal),
            }
        }
    }
}

/// The next TCP connection; errors are logged and retried after a pause (out of descriptors,
/// most likely, which the caps are there to prevent).
pub async fn accept_tcp(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
                ) => {}
            Err(error) => {
                tracing::warn!(message = "Accepting a connection failed.", %error);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Where a connection is in its request cycle. The stream and the service share it: the
/// stream runs the header clock while a head is being read, the service says when a request
/// starts and ends, and an upgrade ends the cycle for good.
struct Phase(AtomicU64);

/// The low two bits of [`Phase`]; the rest counts requests, so that the end of one request
/// never marks the next one idle.
const READING_HEAD: u64 = 0;
const WAITING: u64 = 1;
const BUSY: u64 = 2;
const UPGRADED: u64 = 3;
const STATE: u64 = 3;

impl Phase {
    /// A new connection reads its first head.
    fn new() -> Self {
        Self(AtomicU64::new(READING_HEAD))
    }

    fn state(&self) -> u64 {
        self.0.load(Ordering::Acquire) & STATE
    }

    /// A request's head was read; its number.
    fn begin(&self) -> u64 {
        let mut current = self.0.load(Ordering::Acquire);
        loop {
            if current & STATE == UPGRADED {
                return current >> 2;
            }
            let next = (((current >> 2) + 1) << 2) | BUSY;
            match self
                .0
                .compare_exchange(current, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return next >> 2,
                Err(actual) => current = actual,
            }
        }
    }

    /// Request `number` was answered: waiting for the next, unless another began meanwhile.
    fn end(&self, number: u64) {
        let _ = self.0.compare_exchange(
            (number << 2) | BUSY,
            (number << 2) | WAITING,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The first byte of a further request arrived: true if its header clock starts now.
    fn head_started(&self) -> bool {
        let current = self.0.load(Ordering::Acquire);
        current & STATE == WAITING
            && self
                .0
                .compare_exchange(
                    current,
                    (current & !STATE) | READING_HEAD,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    /// The connection switched protocols (WebSocket): HTTP limits no longer apply.
    fn upgraded(&self) {
        self.0.fetch_or(UPGRADED, Ordering::AcqRel);
    }
}

/// A connection's stream: holds its [`Permit`] for as long as the socket is open (through an
/// upgrade too), and fails a read once a request head has taken longer than the header
/// timeout.
struct Limited<I> {
    io: I,
    phase: Arc<Phase>,
    header_timeout: Duration,
    header_deadline: Option<Pin<Box<Sleep>>>,
    _permit: Permit,
}

impl<I> Limited<I> {
    fn new(io: I, permit: Permit, phase: Arc<Phase>, header_timeout: Duration) -> Self {
        Self {
            io,
            phase,
            header_timeout,
            // A new connection's first head is due within the header timeout.
            header_deadline: Some(Box::pin(tokio::time::sleep(header_timeout))),
            _permit: permit,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Limited<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let got_bytes = matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before;
        if got_bytes && this.phase.head_started() {
            let deadline = Instant::now() + this.header_timeout;
            match &mut this.header_deadline {
                Some(sleep) => sleep.as_mut().reset(deadline),
                None => this.header_deadline = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        if this.phase.state() != READING_HEAD {
            this.header_deadline = None;
        } else if polled.is_pending()
            && let Some(deadline) = &mut this.header_deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request headers did not arrive within the header timeout",
            )));
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Limited<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Tells the API that a request's body did not arrive in time (a request extension; the API
/// answers `408 request_timeout` instead of whatever reading the cut-off body led to).
#[derive(Debug, Clone)]
pub struct BodyDeadline {
    expired: Arc<AtomicBool>,
    /// The timeout, for the answer.
    pub timeout: Duration,
}

impl BodyDeadline {
    /// True once the body was cut off.
    pub fn expired(&self) -> bool {
        self.expired.load(Ordering::Acquire)
    }
}

/// The error a body cut off by its deadline yields to whoever reads it.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs())]
pub struct BodyTimedOut(Duration);

/// A request body that fails once its deadline has passed. The deadline counts from the first
/// time the server reads it, not from the end of the headers: a request that waits its turn
/// before reading (a tenant's queued plugin uploads) is not the client's delay.
struct DeadlineBody {
    body: Incoming,
    sleep: Option<Pin<Box<Sleep>>>,
    deadline: BodyDeadline,
}

impl Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.deadline.expired() {
            return Poll::Ready(Some(Err(BodyTimedOut(this.deadline.timeout).into())));
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let timeout = this.deadline.timeout;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        this.deadline.expired.store(true, Ordering::Release);
        Poll::Ready(Some(Err(BodyTimedOut(this.deadline.timeout).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A response body that marks its request answered when hyper is done with it.
struct ResponseBody {
    body: axum::body::Body,
    phase: Arc<Phase>,
    number: u64,
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        self.phase.end(self.number);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves `router` on the connections `listener` admits until `shutdown` resolves; then stops
/// accepting, lets each connection finish the request it is serving, and returns once every
/// connection has closed (upgraded ones included: the caller closes those).
pub async fn serve<A: Accept>(
    mut listener: A,
    router: Router,
    settings: &Settings,
    admission: Arc<Admission>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // hyper's header timer starts when the previous response was sent: on a keep-alive
        // connection it is the idle timeout. `Limited` runs the shorter header clock.
        .header_read_timeout(settings.idle_timeout)
        .keep_alive(true);
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let phase = Arc::new(Phase::new());
        let io = Limited::new(
            accepted.io,
            accepted.permit,
            phase.clone(),
            settings.header_timeout,
        );
        let service = service(router.clone(), accepted.peer, phase, settings.body_timeout);
        let connection = http
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(message = "Connection ended with an error.", %error);
                    }
                    return;
                }
                _ = stopping.wait_for(|stop| *stop) => {}
            }
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        });
    }
    drop(listener);
    let _ = stop.send(true);
    admission.drained().await;
}

/// The per-connection service: the client's address for handlers (`ConnectInfo`), the body
/// deadline, and the request cycle for [`Phase`].
fn service(
    router: Router,
    peer: SocketAddr,
    phase: Arc<Phase>,
    body_timeout: Duration,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<ResponseBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<ResponseBody>, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |request: Request<Incoming>| {
        let number = phase.begin();
        let deadline = BodyDeadline {
            expired: Arc::new(AtomicBool::new(false)),
            timeout: body_timeout,
        };
        let mut request = request.map(|body| {
            axum::body::Body::new(DeadlineBody {
                body,
                sleep: None,
                deadline: deadline.clone(),
            })
        });
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(deadline);
        let call = router.clone().oneshot(request);
        let phase = phase.clone();
        async move {
            let response = match call.await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                phase.upgraded();
            }
            Ok(response.map(|body| ResponseBody {
                body,
                phase,
                number,
            }))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(total: usize, per_address: Option<usize>) -> Settings {
        Settings {
            max_total: total,
            max_per_address: per_address,
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(1),
            open_file_limit: 1024,
        }
    }

    #[test]
    fn caps_count_per_address_and_in_total_until_permits_drop() {
        let admission = Admission::new(&settings(3, Some(2)));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::PerAddress);
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::Total);
        drop(first);
        assert_eq!(admission.open(), 2);
        let _again = admission.admit(a).unwrap();
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_ipv4_as_ipv4() {
        let admission = Admission::new(&settings(10, Some(1)));
        let _one = admission.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            admission
                .admit("2001:db8:1:2:ffff::9".parse().unwrap())
                .unwrap_err(),
            Refusal::PerAddress
        );
        let _other = admission.admit("2001:db8:1:3::1".parse().unwrap()).unwrap();
        let _v4 = admission.admit("198.51.100.7".parse().unwrap()).unwrap();
        assert_eq!(
            admission
                .admit("::ffff:198.51.100.7".parse().unwrap())
                .unwrap_err(),
            Refusal::PerAddress
        );
    }

    #[test]
    fn the_end_of_a_request_does_not_make_the_next_one_idle() {
        let phase = Phase::new();
        assert_eq!(phase.state(), READING_HEAD);
        let first = phase.begin();
        phase.end(first);
        assert_eq!(phase.state(), WAITING);
        assert!(phase.head_started());
        assert_eq!(phase.state(), READING_HEAD);
        let second = phase.begin();
        // A pipelined third request began before the second's body was dropped.
        let third = phase.begin();
        phase.end(second);
        assert_eq!(phase.state(), BUSY);
        phase.upgraded();
        phase.end(third);
        assert_eq!(phase.state(), UPGRADED);
        assert!(!phase.head_started());
    }
}
