//! The `logctl-faultproxy` binary on random loopback ports, driven through its control API as
//! `logctl` will: faults set, shown, refused with the field named, and cleared; SIGTERM stops it.

use std::net::TcpListener as StdListener;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn ready(control: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if reqwest::get(format!("{control}/health/ready"))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the fault proxy did not come up");
}

#[tokio::test]
async fn faults_are_set_refused_and_cleared_through_the_control_api() {
    let upstream = logctl_faultproxy::echo::serve().await.expect("echo server");
    let (control_port, link_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("faultproxy-{control_port}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("faultproxy.toml");
    std::fs::write(
        &config,
        format!(
            "control = \"127.0.0.1:{control_port}\"\n\n[[proxies]]\nname = \"redis\"\n\
             listen = \"127.0.0.1:{link_port}\"\nupstream = \"{upstream}\"\n"
        ),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_logctl-faultproxy"))
        .env("LOGCTL_CONFIG", &config)
        .spawn()
        .expect("starts");
    let mut running = Running(child);
    let control = format!("http://127.0.0.1:{control_port}");
    ready(&control).await;
    let http = reqwest::Client::new();
    let faults = format!("{control}/proxies/redis/faults");

    // A black hole: accepted, never answered.
    let r = http
        .post(&faults)
        .body(r#"{"type":"blackhole"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 201);
    let mut s = TcpStream::connect(("127.0.0.1", link_port))
        .await
        .expect("accepted");
    s.write_all(b"PING\r\n").await.expect("written");
    let mut buf = [0u8; 8];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf))
            .await
            .is_err()
    );

    // Bad input: a 400 naming the field, and the faults as they were.
    let r = http
        .post(&faults)
        .body(r#"{"type":"latency","latency_ms":100,"jitter_ms":0,"toxicity":3}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["field"], "toxicity", "{body}");
    let r = http
        .put(&faults)
        .body("not json")
        .send()
        .await
        .expect("sent");
    assert_eq!(r.status(), 400);
    let unknown = http
        .post(format!("{control}/proxies/nowhere/faults"))
        .body(r#"{"type":"reset"}"#)
        .send()
        .await
        .expect("sent");
    assert_eq!(unknown.status(), 404);
    let listed: serde_json::Value = http
        .get(format!("{control}/proxies"))
        .send()
        .await
        .expect("sent")
        .json()
        .await
        .expect("json");
    assert_eq!(listed[0]["faults"][0]["type"], "blackhole", "{listed}");

    // Cleared: the link answers again.
    let r = http.delete(&faults).send().await.expect("sent");
    assert_eq!(r.status(), 200);
    let mut s = TcpStream::connect(("127.0.0.1", link_port))
        .await
        .expect("accepted");
    s.write_all(b"ok").await.expect("written");
    let mut two = [0u8; 2];
    s.read_exact(&mut two).await.expect("echoed");
    assert_eq!(&two, b"ok");

    // SIGTERM: it stops on its own.
    let pid = running.0.id();
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = running.0.try_wait() {
            assert!(status.success(), "{status:?}");
            break;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
