//! `dropscope serve`: the agent's flags, its HTTP server (axum, on a tokio runtime of its
//! own thread: request handling never runs on the capture's threads), and its life cycle
//! (bind, attach, serve, stop on SIGTERM/SIGINT with every program detached).

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, State as AxState};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use engine::serve::{expo, session, ServeOptions, State};

use crate::args::ServeArgs;

struct App {
    state: Arc<State>,
    token: Option<String>,
}

type Shared = Arc<App>;

fn json_response(status: StatusCode, v: &serde_json::Value) -> Response {
    let mut body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    body.push('\n');
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &serde_json::json!({ "error": message.into() }))
}

/// Constant-time comparison of the bearer token (no early exit on the first difference).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A 401 answer unless the request carries the token (when one is configured).
fn authorize(app: &App, headers: &HeaderMap) -> Option<Response> {
    let Some(token) = &app.token else {
        return None;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => None,
        _ => Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "{\"error\": \"a valid bearer token is required (Authorization: Bearer TOKEN)\"}\n",
            )
                .into_response(),
        ),
    }
}

async fn metrics(AxState(app): AxState<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&app, &headers) {
        return r;
    }
    let format = expo::Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let body = app.state.render_metrics(format);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

#[derive(serde::Deserialize)]
struct FlowsQuery {
    top: Option<usize>,
    reason: Option<String>,
    netns: Option<u32>,
}

async fn flows(
    AxState(app): AxState<Shared>,
    headers: HeaderMap,
    q: Result<Query<FlowsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(r) = authorize(&app, &headers) {
        return r;
    }
    let Query(q) = match q {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match app
        .state
        .flows_json(q.top.unwrap_or(20), q.reason.as_deref(), q.netns)
    {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn start_capture(
    AxState(app): AxState<Shared>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    if let Some(r) = authorize(&app, &headers) {
        return r;
    }
    let body = match body {
        Ok(b) => b,
        Err(e) => return error(e.status(), e.body_text()),
    };
    let req: session::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad JSON: {e}")),
    };
    let st = app.state.clone();
    let r = tokio::task::spawn_blocking(move || st.sessions.start(req, &st.names)).await;
    match r {
        Ok(Ok(doc)) => json_response(StatusCode::CREATED, &doc),
        Ok(Err(refused)) => error(
            StatusCode::from_u16(refused.status).unwrap_or(StatusCode::BAD_REQUEST),
            refused.message,
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list_captures(AxState(app): AxState<Shared>, headers: HeaderMap) -> Response {
    if let Some(r) = authorize(&app, &headers) {
        return r;
    }
    let v = app.state.sessions.list(&app.state.names);
    json_response(StatusCode::OK, &serde_json::json!({ "captures": v }))
}

async fn get_capture(
    AxState(app): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = authorize(&app, &headers) {
        return r;
    }
    match id
        .parse::<u64>()
        .ok()
        .and_then(|id| app.state.sessions.status(id, &app.state.names))
    {
        Some(v) => json_response(StatusCode::OK, &v),
        None => error(StatusCode::NOT_FOUND, format!("no capture session {id}")),
    }
}

async fn stop_capture(
    AxState(app): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = authorize(&app, &headers) {
        return r;
    }
    let found = id
        .parse::<u64>()
        .ok()
        .is_some_and(|id| app.state.sessions.stop(id));
    if !found {
        return error(StatusCode::NOT_FOUND, format!("no capture session {id}"));
    }
    get_capture(AxState(app), headers, Path(id)).await
}

/// Streams a session's pcapng: what the file holds now, then what is appended, until the
/// session has ended and its file is complete.
async fn capture_pcapng(
    AxState(app): AxState<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if let Some(r) = authorize(&app, &headers) {
        return r;
    }
    // `?file=N`: one file of a rotating session (as its status lists them).
    let file = match query.as_deref().and_then(|q| q.strip_prefix("file=")) {
        None => None,
        Some(n) => match n.parse::<usize>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("file={n} is not a file number (see the session's files)"),
                )
            }
        },
    };
    let Some(info) = id
        .parse::<u64>()
        .ok()
        .and_then(|id| app.state.sessions.stream(id, file))
    else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no capture session {id}, or no such file of it (overwritten files are gone)"),
        );
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || stream_file(&info, &tx));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/vnd.tcpdump.pcap")],
        Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response()
}

fn stream_file(info: &session::StreamInfo, tx: &tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) {
    use std::io::Read as _;
    // The file is `<path>.tmp` while the session runs and `<path>` after: an open
    // descriptor follows it through the rename.
    let mut file = None;
    for _ in 0..100 {
        if let Ok(f) = std::fs::File::open(&info.path).or_else(|_| std::fs::File::open(&info.tmp)) {
            file = Some(f);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Some(mut file) = file else {
        let _ = tx.blocking_send(Err(std::io::Error::other("the session's file is gone")));
        return;
    };
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let done = info.done.load(Ordering::Acquire);
        match file.read(&mut buf) {
            Ok(0) if done => return,
            Ok(0) => std::thread::sleep(Duration::from_millis(50)),
            Ok(n) => {
                if tx
                    .blocking_send(Ok(Bytes::copy_from_slice(&buf[..n])))
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
    }
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such endpoint: /metrics, /api/v1/flows, /api/v1/captures[/ID[/pcapng]]",
    )
}

fn router(app: Shared, max_body: usize) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/flows", get(flows))
        .route("/api/v1/captures", get(list_captures).post(start_capture))
        .route(
            "/api/v1/captures/:id",
            get(get_capture).delete(stop_capture),
        )
        .route("/api/v1/captures/:id/pcapng", get(capture_pcapng))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(app)
}

/// The address `--listen` names (an IP:port, or host:port resolved once).
fn listen_addr(s: &str) -> Result<SocketAddr> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    s.to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .with_context(|| {
            format!("--listen {s} is not an address: give IP:PORT, e.g. 127.0.0.1:9464")
        })
}

pub(crate) fn read_token(p: &std::path::Path) -> Result<String> {
    let t = std::fs::read_to_string(p)
        .with_context(|| format!("cannot read the token file {}", p.display()))?;
    let t = t.trim().to_string();
    if t.is_empty() || t.contains(char::is_whitespace) {
        bail!(
            "the token file {} must hold one token (no spaces): e.g. head -c 32 /dev/urandom | base64 > FILE",
            p.display()
        );
    }
    Ok(t)
}

pub fn serve(a: ServeArgs) -> Result<i32> {
    let addr = listen_addr(&a.listen)?;
    let token = a.token_file.as_deref().map(read_token).transpose()?;
    if !addr.ip().is_loopback() && token.is_none() {
        bail!(
            "--listen {addr} is not a loopback address: anyone who reaches it could read drops and capture packets; give --token-file FILE (bearer token) or listen on 127.0.0.1"
        );
    }
    if a.snaplen == 0 || a.snaplen > engine::MAX_KERNEL_SNAPLEN {
        bail!(
            "snap length {} is out of range: use -s 1..={}",
            a.snaplen,
            engine::MAX_KERNEL_SNAPLEN
        );
    }
    use engine::kernel::loader as l;
    if a.kernel_flows == 0 || a.kernel_flows > l::MAX_KERNEL_FLOWS {
        bail!(
            "--kernel-flows {} is out of range: give 1..={}",
            a.kernel_flows,
            l::MAX_KERNEL_FLOWS
        );
    }
    if a.exemplars > 1_000_000 {
        bail!(
            "--exemplars {} is more than 1000000 per flow and second",
            a.exemplars
        );
    }
    if a.metrics_max_series == 0 || a.max_flows == 0 || a.max_sessions == 0 {
        bail!("--metrics-max-series, --max-flows and --max-sessions must be at least 1");
    }
    if a.ring_size_mib == Some(0) {
        bail!("--ring-size 0 leaves no room for packets: give at least 1 MiB");
    }
    let cpus = l::possible_cpus()?;
    let ring_bytes_per_cpu = match a.ring_size_mib {
        Some(m) => u64::from(m.min(256)) << 20,
        None => l::default_ring_bytes_per_cpu(cpus),
    };
    // Bound before anything is attached: an address in use is one line, nothing loaded.
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let mut names = engine::lookup::Names::load(false);
    if !a.no_names {
        names.pods = Some(engine::pods::PodNames::start(
            engine::pods::Sources::node(),
            Duration::from_secs(5),
        ));
    }
    let names = Arc::new(names);
    let sessions = session::Sessions::new(
        a.session_dir.clone(),
        session::Limits {
            max_running: a.max_sessions,
            max_bytes: a.session_max_mb.saturating_mul(1_000_000),
            max_duration: Duration::from_secs(a.session_max_duration.max(1)),
            lifetime: Duration::from_secs(a.session_lifetime),
            snaplen: a.snaplen,
        },
    )
    .with_context(|| {
        format!(
            "cannot create the session directory {}",
            a.session_dir.display()
        )
    })?;
    let options = ServeOptions {
        snaplen: a.snaplen,
        ring_bytes_per_cpu,
        kernel_flows: a.kernel_flows,
        exemplars: a.exemplars,
        max_flows: a.max_flows,
        max_series: a.metrics_max_series,
        cilium_socket: Some(a.cilium_socket.clone()),
        cilium_release: a.cilium_release,
    };
    let kernel = engine::serve::open_kernel(&options)?;
    let state = Arc::new(State::new(names, options, sessions));
    let interrupt = crate::install_interrupt()?;
    let app = Arc::new(App {
        state: state.clone(),
        token,
    });
    let (shut_tx, shut_rx) = tokio::sync::oneshot::channel::<()>();
    let max_body = a.max_body;
    let http = std::thread::Builder::new()
        .name("dropscope-http".into())
        .spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the HTTP runtime")?;
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(listener)?;
                axum::serve(l, router(app, max_body))
                    .with_graceful_shutdown(async move {
                        let _ = shut_rx.await;
                    })
                    .await
            })
            .context("serving HTTP")
        })
        .context("starting the HTTP thread")?;
    eprintln!(
        "dropscope: serving on http://{addr} (/metrics, /api/v1/flows, /api/v1/captures); kernel drops counted in the kernel, {} exemplars per flow and second; SIGTERM or Ctrl-C to stop",
        a.exemplars
    );
    let report = engine::serve::run(state.clone(), kernel, &interrupt);
    let _ = shut_tx.send(());
    let http_result = http
        .join()
        .map_err(|_| anyhow::anyhow!("the HTTP thread panicked"))?;
    let report = report?;
    http_result?;
    for n in &report.notes {
        eprintln!("dropscope: {n}");
    }
    eprintln!("dropscope: stopped; every program detached");
    Ok(0)
}
