//! SIGTERM: the server stops accepting, lets in-flight requests finish, exits 0.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helpers::Env;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish() {
    let env = Env::new("sigterm", &[]);
    let mut server = env.serve_demo(&[("CAMPUS_BENCH_ROUTES", "1")]);
    let client = reqwest::Client::new();
    let slow = tokio::spawn({
        let url = format!("{}/bench/sleep?ms=1500", server.base);
        let client = client.clone();
        async move { client.get(url).send().await?.text().await }
    });
    // The request is in the handler's sleep once the server has seen it; a
    // generous head start keeps a slow machine from signalling first.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!slow.is_finished(), "the slow request ended early");
    kill(Pid::from_raw(server.child.id() as i32), Signal::SIGTERM).unwrap();

    let body = slow
        .await
        .unwrap()
        .expect("the in-flight request completed");
    assert_eq!(body, r#"{"slept":true}"#);

    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
}
