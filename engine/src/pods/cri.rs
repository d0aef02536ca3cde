//! The container runtime's CRI API (`runtime.v1.RuntimeService`, gRPC on containerd's or
//! CRI-O's unix socket): every ready pod sandbox with its name, namespace, UID, labels and
//! address (`ListPodSandbox`), and its network namespace (`PodSandboxStatus` with `verbose`:
//! the runtime's `info` JSON names the namespace's path, or the sandbox's pid).
//!
//! The messages are the fields dropscope reads of Kubernetes' `cri-api` `api.proto`, with
//! their field numbers; prost skips the others.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxRequest {
    #[prost(message, optional, tag = "1")]
    pub filter: Option<PodSandboxFilter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxFilter {
    #[prost(string, tag = "1")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ListPodSandboxResponse {
    #[prost(message, repeated, tag = "1")]
    pub items: Vec<PodSandbox>,
}

/// `PodSandboxState`: 0 `SANDBOX_READY`, 1 `SANDBOX_NOTREADY`.
pub const SANDBOX_READY: i32 = 0;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandbox {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(int64, tag = "4")]
    pub created_at: i64,
    #[prost(map = "string, string", tag = "5")]
    pub labels: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxMetadata {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub uid: String,
    #[prost(string, tag = "3")]
    pub namespace: String,
    #[prost(uint32, tag = "4")]
    pub attempt: u32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusRequest {
    #[prost(string, tag = "1")]
    pub pod_sandbox_id: String,
    #[prost(bool, tag = "2")]
    pub verbose: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatusResponse {
    #[prost(message, optional, tag = "1")]
    pub status: Option<PodSandboxStatus>,
    /// Runtime-specific JSON (containerd and CRI-O: key `info`), only with `verbose`.
    #[prost(map = "string, string", tag = "2")]
    pub info: HashMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxStatus {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(message, optional, tag = "2")]
    pub metadata: Option<PodSandboxMetadata>,
    #[prost(int32, tag = "3")]
    pub state: i32,
    #[prost(message, optional, tag = "5")]
    pub network: Option<PodSandboxNetworkStatus>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodSandboxNetworkStatus {
    #[prost(string, tag = "1")]
    pub ip: String,
    #[prost(message, repeated, tag = "2")]
    pub additional_ips: Vec<PodIp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PodIp {
    #[prost(string, tag = "1")]
    pub ip: String,
}

pub const LIST_POD_SANDBOX: &str = "/runtime.v1.RuntimeService/ListPodSandbox";
pub const POD_SANDBOX_STATUS: &str = "/runtime.v1.RuntimeService/PodSandboxStatus";

/// One ready sandbox as dropscope uses it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sandbox {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub labels: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
    /// Inode of its network namespace, when the runtime says where it is.
    pub netns: Option<u32>,
}

/// The network namespace's inode from a verbose `info` JSON: its `path` under
/// `runtimeSpec.linux.namespaces` (`type` `network`), else the sandbox's `pid`.
pub fn netns_from_info(info: &HashMap<String, String>, proc_root: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let v: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    let path = v
        .pointer("/runtimeSpec/linux/namespaces")
        .and_then(|n| n.as_array())
        .and_then(|a| {
            a.iter()
                .find(|n| n.get("type").and_then(|t| t.as_str()) == Some("network"))
        })
        .and_then(|n| n.get("path"))
        .and_then(|p| p.as_str())
        .filter(|p| !p.is_empty());
    if let Some(p) = path {
        if let Ok(m) = std::fs::metadata(p) {
            return u32::try_from(m.ino()).ok();
        }
    }
    let pid = v.get("pid").and_then(|p| p.as_u64()).filter(|p| *p > 0)?;
    let link = std::fs::read_link(proc_root.join(pid.to_string()).join("ns/net")).ok()?;
    link.to_str()?
        .strip_prefix("net:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Every ready sandbox the runtime at `sock` lists, within `timeout` in all.
pub fn sandboxes(
    sock: &Path,
    timeout: Duration,
    proc_root: &Path,
) -> std::io::Result<Vec<Sandbox>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sock = sock.to_path_buf();
    let proc_root = proc_root.to_path_buf();
    rt.block_on(async move {
        tokio::time::timeout(timeout, ask(sock, proc_root))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
    })
}

async fn ask(sock: PathBuf, proc_root: PathBuf) -> std::io::Result<Vec<Sandbox>> {
    let err = |e: tonic::Status| std::io::Error::other(format!("{}: {}", e.code(), e.message()));
    // The URI is required by the API and unused: the connector dials the socket.
    let channel = tonic::transport::Endpoint::try_from("http://[::1]:50051")
        .map_err(std::io::Error::other)?
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(sock).await?,
                ))
            }
        }))
        .await
        .map_err(std::io::Error::other)?;
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(std::io::Error::other)?;
    let list: ListPodSandboxResponse = grpc
        .unary(
            tonic::Request::new(ListPodSandboxRequest { filter: None }),
            PathAndQuery::from_static(LIST_POD_SANDBOX),
            tonic::codec::ProstCodec::default(),
        )
        .await
        .map_err(err)?
        .into_inner();
    let mut out = Vec::new();
    for sb in list.items.into_iter().filter(|s| s.state == SANDBOX_READY) {
        let Some(md) = sb.metadata.clone().filter(|m| !m.name.is_empty()) else {
            continue;
        };
        grpc.ready().await.map_err(std::io::Error::other)?;
        // A sandbox that went away between the two calls is skipped, not an error.
        let status: Option<PodSandboxStatusResponse> = grpc
            .unary(
                tonic::Request::new(PodSandboxStatusRequest {
                    pod_sandbox_id: sb.id.clone(),
                    verbose: true,
                }),
                PathAndQuery::from_static(POD_SANDBOX_STATUS),
                tonic::codec::ProstCodec::default(),
            )
            .await
            .ok()
            .map(tonic::Response::into_inner);
        let mut ips = Vec::new();
        let mut netns = None;
        if let Some(st) = &status {
            if let Some(n) = st.status.as_ref().and_then(|s| s.network.as_ref()) {
                ips = std::iter::once(n.ip.as_str())
                    .chain(n.additional_ips.iter().map(|i| i.ip.as_str()))
                    .filter_map(|i| i.parse().ok())
                    .collect();
            }
            netns = netns_from_info(&st.info, &proc_root);
        }
        let mut labels: Vec<String> = sb
            .labels
            .iter()
            .map(|(k, v)| format!("k8s:{k}={v}"))
            .collect();
        labels.sort();
        out.push(Sandbox {
            namespace: md.namespace,
            name: md.name,
            uid: md.uid,
            labels,
            ips,
            netns,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_from_the_runtime_spec_path_or_the_pid() {
        use std::os::unix::fs::MetadataExt as _;
        let own = std::fs::metadata("/proc/self/ns/net").unwrap().ino() as u32;
        let info = |j: &str| HashMap::from([("info".to_string(), j.to_string())]);
        let by_path = info(
            r#"{"pid":0,"runtimeSpec":{"linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/proc/self/ns/net"}]}}}"#,
        );
        assert_eq!(netns_from_info(&by_path, Path::new("/proc")), Some(own));
        let by_pid = info(&format!(r#"{{"pid":{}}}"#, std::process::id()));
        assert_eq!(netns_from_info(&by_pid, Path::new("/proc")), Some(own));
        assert_eq!(netns_from_info(&info("{}"), Path::new("/proc")), None);
        assert_eq!(netns_from_info(&info("not json"), Path::new("/proc")), None);
        assert_eq!(netns_from_info(&HashMap::new(), Path::new("/proc")), None);
    }
}
