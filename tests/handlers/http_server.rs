//! A tiny HTTP/1.1 file server for the download-file.sh tests: GET and HEAD, `Range: bytes=N-`
//! (206/416, or ignored per route), 404 for unknown paths, routes that cut the first GETs short (to make a client
//! resume) or that announce a huge size in HEAD (disk-space check). Every request is recorded.
//! One request per connection (`Connection: close`), one thread per connection.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub range: Option<String>,
}

#[derive(Clone, Default)]
pub struct Route {
    pub body: Vec<u8>,
    /// The next `cut_gets` GETs send the headers of the full response but only `cut_at`
    /// bytes of the body, then close the connection.
    pub cut_gets: usize,
    pub cut_at: usize,
    /// Content-Length announced by HEAD instead of the body's length.
    pub head_length: Option<u64>,
    /// Ignore `Range` and always answer 200 with the whole body (servers without resume).
    pub no_range: bool,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    requests: Vec<Request>,
}

pub struct Server {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        // The thread ends with the test process; the listener is never closed explicitly.
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = Arc::clone(&shared);
                thread::spawn(move || serve(stream, &state));
            }
        });
        Server { addr, state }
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_owned(), route);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts.next().unwrap_or("").to_owned();
    let mut range = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = h.split_once(':') {
            if name.trim().eq_ignore_ascii_case("range") {
                range = Some(value.trim().to_owned());
            }
        }
    }

    let (route, cut) = {
        let mut st = state.lock().unwrap();
        st.requests.push(Request {
            method: method.clone(),
            path: path.clone(),
            range: range.clone(),
        });
        match st.routes.get_mut(&path) {
            Some(r) => {
                let cut = method == "GET" && r.cut_gets > 0;
                if cut {
                    r.cut_gets -= 1;
                }
                (Some(r.clone()), cut)
            }
            None => (None, false),
        }
    };
    let mut out = stream;
    let Some(route) = route else {
        let body = b"not found\n";
        let _ = write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if method != "HEAD" {
            let _ = out.write_all(body);
        }
        return;
    };

    let len = route.body.len();
    let start = range
        .as_deref()
        .filter(|_| !route.no_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, extra, from) = match start {
        Some(n) if n >= len => {
            let _ = write!(
                out,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            return;
        }
        Some(n) => (
            "206 Partial Content",
            format!("Content-Range: bytes {n}-{}/{len}\r\n", len - 1),
            n,
        ),
        None => ("200 OK", String::new(), 0),
    };
    let announced = match (method.as_str(), route.head_length) {
        ("HEAD", Some(h)) => h,
        _ => (len - from) as u64,
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Length: {announced}\r\nAccept-Ranges: bytes\r\n{extra}Connection: close\r\n\r\n"
    );
    if method == "HEAD" {
        return;
    }
    let body = &route.body[from..];
    if cut {
        let _ = out.write_all(&body[..route.cut_at.min(body.len())]);
        let _ = out.flush();
        let _ = out.shutdown(Shutdown::Both);
        return;
    }
    let _ = out.write_all(body);
}
