//! `make run`'s demo upstream: echoes every request as JSON on 127.0.0.1:<port>.
fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(18080);
    let _server = api_auth_integration::Server::echo_on(port);
    eprintln!("echo upstream on 127.0.0.1:{port}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
