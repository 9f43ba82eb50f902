//! Graceful shutdown: SIGTERM closes every session with 1001 on both sides and exits 0.

use wsgate_protocol::Message;

use crate::support::*;

#[tokio::test]
async fn sigterm_closes_both_sides_with_1001_and_exits_0() {
    let mut up = Upstream::echo().await;
    let mut gw = Gateway::proxy(&["--upstream", &up.url()]).await;
    let mut a = ws_connect(&gw.ws("/a")).await;
    let mut b = ws_connect(&gw.ws("/b")).await;
    a.send(Message::text("x")).await.unwrap();
    recv(&mut a).await;
    b.send(Message::text("y")).await.unwrap();
    recv(&mut b).await;
    let ends = tokio::spawn(async move {
        let ca = close_of(&recv(&mut a).await).unwrap();
        let cb = close_of(&recv(&mut b).await).unwrap();
        // Complete the close handshakes, as a well-behaved client does.
        a.flush().await.ok();
        b.flush().await.ok();
        (ca, cb)
    });
    let code = gw.terminate().await;
    let (ca, cb) = within(ends).await.unwrap();
    assert_eq!((ca.code, cb.code), (1001, 1001));
    assert_eq!(code, 0, "{}", gw.logs());
    let mut upstream_closes = 0;
    while upstream_closes < 2 {
        if let Message::Close(Some(c)) = up.next_message().await {
            assert_eq!(c.code, 1001);
            upstream_closes += 1;
        }
    }
}
