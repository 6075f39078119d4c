//! An echo server: the upstream the proxy's tests and its cost measurement stand it in front
//! of, so what comes back is exactly what went through.

use std::net::SocketAddr;

use tokio::net::TcpListener;

/// Listens on a random loopback port and sends every byte back as it came, until the runtime
/// ends.
pub async fn serve() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}
