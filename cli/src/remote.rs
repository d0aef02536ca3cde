//! `dropscope capture --remote URL`: the capture as a session of a `dropscope serve`
//! agent. The flags become the session's request; its pcapng is streamed into the local
//! `-w` file (written as `FILE.tmp`, renamed when complete, 0600); the summary comes from
//! the session's ledger. Ctrl-C ends the session on the agent, and the file is completed.

use std::io::Write as _;
use std::sync::atomic::Ordering;

use anyhow::{bail, Context as _, Result};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;

use crate::args::CaptureArgs;

/// `http://host:port[/prefix]`.
struct Base {
    host: String,
    port: u16,
    prefix: String,
    token: Option<String>,
}

fn parse_url(url: &str) -> Result<Base> {
    let Some(rest) = url.strip_prefix("http://") else {
        bail!("--remote {url}: give an http:// URL such as http://127.0.0.1:9464 (for TLS, use a tunnel such as kubectl port-forward)");
    };
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (
            h.trim_start_matches('[').trim_end_matches(']'),
            p.parse::<u16>()
                .map_err(|_| anyhow::anyhow!("--remote {url}: {p:?} is not a port"))?,
        ),
        _ => (authority, 80),
    };
    if host.is_empty() {
        bail!("--remote {url}: no host");
    }
    Ok(Base {
        host: host.to_string(),
        port,
        prefix: prefix.to_string(),
        token: None,
    })
}

async fn call(
    base: &Base,
    method: hyper::Method,
    path: &str,
    body: Option<Vec<u8>>,
) -> Result<hyper::Response<hyper::body::Incoming>> {
    let stream = tokio::net::TcpStream::connect((base.host.as_str(), base.port))
        .await
        .with_context(|| format!("cannot connect to {}:{}", base.host, base.port))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", base.prefix))
        .header(hyper::header::HOST, format!("{}:{}", base.host, base.port));
    if let Some(t) = &base.token {
        req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    Ok(sender.send_request(req).await?)
}

/// The body of an answer as JSON, or the agent's error as one line.
async fn json_of(r: hyper::Response<hyper::body::Incoming>) -> Result<serde_json::Value> {
    let status = r.status();
    let body = r.into_body().collect().await?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_else(
        |_| serde_json::json!({ "error": String::from_utf8_lossy(&body).trim().to_string() }),
    );
    if !status.is_success() {
        bail!(
            "the agent answered {status}: {}",
            v["error"].as_str().unwrap_or("(no message)")
        );
    }
    Ok(v)
}

pub fn capture(url: &str, c: &CaptureArgs) -> Result<i32> {
    let mut base = parse_url(url)?;
    let Some(out) = c.out.write.clone() else {
        bail!("--remote needs -w FILE: the session's pcapng is written there");
    };
    if c.out.file_format(&out) != engine::pcap::FileFormat::Pcapng {
        bail!("--remote writes pcapng (the agent's session format): give -w FILE.pcapng");
    }
    if c.packets || !c.pod.is_empty() || !c.k8s_namespace.is_empty() || !c.label.is_empty() {
        bail!("--packets, --pod, --namespace and --label are not available with --remote");
    }
    if c.select.interface.len() > 1 {
        bail!(
            "-i is given {} times: a session takes one interface",
            c.select.interface.len()
        );
    }
    if let Some(p) = &c.token_file {
        base.token = Some(crate::serve::read_token(p)?);
    }
    let filter = crate::filter_text(&c.select, &c.expression)?;
    let req = serde_json::json!({
        "filter": (!filter.trim().is_empty()).then(|| filter.trim().to_string()),
        "reason": c.select.reason,
        "not_reason": c.select.not_reason,
        "interface": c.select.interface.first(),
        "netns": c.select.netns,
        "duration": c.out.duration,
        "count": c.out.count,
        "snaplen": c.snaplen,
        "exemplars": c.exemplars,
    });
    engine::atomic::check_writable(&out)?;
    let interrupt = crate::install_interrupt()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let path = out.clone();
    let summary = rt.block_on(async move {
        let r = call(
            &base,
            hyper::Method::POST,
            "/api/v1/captures",
            Some(serde_json::to_vec(&req)?),
        )
        .await?;
        let started = json_of(r).await?;
        let id = started["id"]
            .as_u64()
            .context("the agent's answer has no session id")?;
        eprintln!("dropscope: capturing drops in session {id} of {url}; Ctrl-C to stop");
        let r = call(
            &base,
            hyper::Method::GET,
            &format!("/api/v1/captures/{id}/pcapng"),
            None,
        )
        .await?;
        if !r.status().is_success() {
            json_of(r).await?;
            bail!("the agent gave no pcapng");
        }
        let tmp = engine::atomic::tmp_path(&path);
        let mut file = {
            use std::os::unix::fs::OpenOptionsExt as _;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(c.out.file_mode)
                .open(&tmp)
                .with_context(|| format!("cannot create {}", tmp.display()))?
        };
        let mut body = r.into_body();
        let mut stopped = false;
        let written = async {
            loop {
                let frame =
                    tokio::time::timeout(std::time::Duration::from_millis(100), body.frame()).await;
                match frame {
                    Err(_) => {}
                    Ok(None) => break,
                    Ok(Some(f)) => {
                        if let Ok(d) = f?.into_data() {
                            file.write_all(&d)?;
                        }
                    }
                }
                if !stopped && interrupt.load(Ordering::Relaxed) {
                    stopped = true;
                    let r = call(
                        &base,
                        hyper::Method::DELETE,
                        &format!("/api/v1/captures/{id}"),
                        None,
                    )
                    .await?;
                    json_of(r).await?;
                }
            }
            file.flush()?;
            anyhow::Ok(())
        }
        .await;
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
        let r = call(
            &base,
            hyper::Method::GET,
            &format!("/api/v1/captures/{id}"),
            None,
        )
        .await?;
        json_of(r).await
    })?;
    // The summary a local capture prints (flow x reason table, accounting, --stats-json),
    // made from the file the session wrote; then the session's own ledger.
    let local = crate::args::ReplayArgs {
        file: out.clone(),
        input_format: None,
        synthesize: false,
        cilium_release: Some(c.cilium_release),
        types: Vec::new(),
        out: crate::args::OutputArgs {
            write: None,
            format: None,
            rotate_mb: None,
            rotate_secs: None,
            rotate_files: None,
            count: None,
            duration: None,
            ..c.out.clone()
        },
        select: crate::args::SelectArgs::default(),
        expression: Vec::new(),
    };
    let code = crate::replay(local)?;
    let l = &summary["ledger"]["total"];
    let k = &summary["kernel"];
    eprintln!(
        "dropscope: session {} ({}): {} packets written to {}",
        summary["id"],
        summary["stopped_by"].as_str().unwrap_or("?"),
        l["written"],
        out.display()
    );
    eprintln!(
        "ledger: offered {} = filtered {} + over budget {} + written {}{}",
        l["offered"],
        l["filtered"],
        l["over_budget"],
        l["written"],
        if summary["ledger"]["balanced"] == true {
            " (balanced)"
        } else {
            " (NOT balanced)"
        }
    );
    if let Some(per) = summary["ledger"]["per_reason"].as_object() {
        for (name, r) in per {
            eprintln!(
                "  {name}: offered {} filtered {} over budget {} written {}",
                r["offered"], r["filtered"], r["over_budget"], r["written"]
            );
        }
    }
    eprintln!(
        "kernel during the session (all drops on the node): seen {}, not copied (exemplar budget) {}, lost in the ring {}, table full {}",
        k["seen"], k["not_copied"], k["lost_ring"], k["table_full"]
    );
    if let Some(e) = summary["error"].as_str() {
        eprintln!("dropscope: the session's file had an error on the agent: {e}");
        return Ok(2);
    }
    Ok(code)
}
