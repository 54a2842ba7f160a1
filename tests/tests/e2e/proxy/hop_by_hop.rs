//! Hop-by-hop fields (RFC 9110 §7.6.1) do not cross the proxy, in trailers as in heads:
//! the fixed set, and what the head's `Connection` lists.

use super::*;
use crate::body_key::recording_origin;

/// Chunked answers with trailers the upstream declared: hop-by-hop ones of the fixed set,
/// and one its head's `Connection` lists; `X-Ok` alone is end-to-end. (`close`, as the
/// upstream closes each connection once it has answered.)
const ANSWERS_WITH_HOP_BY_HOP_TRAILERS: [&str; 2] = [
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store\r\n\
     Connection: close\r\nTrailer: Connection, Keep-Alive, X-Ok\r\n\r\n\
     2\r\nok\r\n0\r\nConnection: close\r\nKeep-Alive: 5\r\nX-Ok: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nCache-Control: no-store\r\n\
     Connection: close, x-secret\r\nTrailer: X-Secret, X-Ok\r\n\r\n\
     2\r\nok\r\n0\r\nX-Secret: s\r\nX-Ok: 1\r\n\r\n",
];

#[tokio::test]
async fn an_upstreams_hop_by_hop_trailers_do_not_reach_the_client_rfc_9110_7_6_1() {
    for upstream in ANSWERS_WITH_HOP_BY_HOP_TRAILERS {
        let origin = RawOrigin::start(upstream).await;
        let proxy = origin.proxy().await;
        let http1 = proxy.send(Method::GET, "/t", &[("te", "trailers")]).await;
        // Over HTTP/2 a connection-specific field makes the message malformed (RFC 9113
        // §8.2.2): the stream would be reset.
        let http2 = proxy.send_http2(Method::GET, "/t", &[]).await;
        for answer in [http1, http2] {
            assert_eq!(answer.body, "ok", "{upstream:?}");
            let mut trailers: Vec<&str> = answer.trailers.keys().map(|k| k.as_str()).collect();
            trailers.sort_unstable();
            assert_eq!(trailers, ["x-ok"], "{upstream:?}");
        }
    }
}

#[tokio::test]
async fn a_clients_hop_by_hop_trailers_do_not_reach_the_upstream_rfc_9110_7_6_1() {
    let (addr, log) = recording_origin().await;
    let proxy = RunningProxy::launch_for(&format!("http://{addr}"), &[], &[], None).await;
    let answer = raw_answer(
        &proxy,
        "PUT /t HTTP/1.1\r\nHost: p\r\nConnection: close, x-secret\r\nTransfer-Encoding: chunked\r\n\
         Trailer: Connection, Keep-Alive, X-Secret, X-Ok\r\n\r\n\
         2\r\nok\r\n0\r\nConnection: close\r\nKeep-Alive: 5\r\nX-Secret: s\r\nX-Ok: 1\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("http/1.1 200"), "{answer}");
    assert_eq!(
        *log.lock().expect("not poisoned"),
        ["PUT ok:ok trailers=x-ok cl=-"]
    );
}
