//! Helpers of the archive tests: a real S3-compatible server (s3s serving a temporary
//! directory, the `s3s-fs` crate) on a loopback port, run by the test process itself in a
//! thread of its own; and logs to back up.
#![allow(dead_code)]

use std::net::TcpListener as StdListener;
use std::path::Path;
use std::thread::JoinHandle;

use chronicle::{Event, EventLog, Log, Options};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

/// The bucket every test uses.
pub const BUCKET: &str = "backups";
const ACCESS_KEY: &str = "chronicle-test";
const SECRET_KEY: &str = "chronicle-test-secret";

/// An S3 server on 127.0.0.1 serving a temporary directory, stopped when dropped.
pub struct S3Server {
    pub endpoint: String,
    pub root: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl S3Server {
    /// Starts a server with one bucket, [`BUCKET`].
    pub fn start() -> S3Server {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let http = ConnBuilder::new(TokioExecutor::new());
                loop {
                    let socket = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok((socket, _)) => {
                                // Without it, Nagle's algorithm and delayed ACKs hold each
                                // response for 40 ms on loopback.
                                let _ = socket.set_nodelay(true);
                                socket
                            }
                            Err(_) => continue,
                        },
                        _ = &mut stopped => break,
                    };
                    let connection =
                        http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
                    tokio::spawn(async move {
                        let _ = connection.await;
                    });
                }
            });
        });
        S3Server { endpoint, root, stop: Some(stop), thread: Some(thread) }
    }

    /// The store options that reach this server.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint.as_str()),
            ("aws_access_key_id", ACCESS_KEY),
            ("aws_secret_access_key", SECRET_KEY),
            ("aws_region", "us-east-1"),
            ("aws_allow_http", "true"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
    }

    /// The URL of a backup named `name` in the bucket.
    pub fn url(&self, name: &str) -> String {
        format!("s3://{BUCKET}/{name}")
    }

    /// Where the server keeps the objects of the backup `name` (to damage them).
    pub fn dir_of(&self, name: &str) -> std::path::PathBuf {
        self.root.path().join(BUCKET).join(name)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Options with small segments, so that a few hundred events fill several.
pub fn small_segments() -> Options {
    Options { segment_bytes: 64 << 10, ..Options::default() }
}

/// Appends `count` events to `log`, in batches of 1 to 4, syncing now and then; aggregate ids
/// cycle through 0..7. `seed` varies the sizes.
pub fn append_events(log: &mut EventLog, count: usize, seed: u64) {
    let mut state = seed;
    let mut written = 0;
    while written < count {
        state =
            state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let batch = 1 + (state >> 60) as usize % 4;
        let events: Vec<Event> = (0..batch.min(count - written))
            .map(|i| {
                let n = written + i;
                let len = 20 + ((state >> 32) as usize + n * 37) % 400;
                Event::builder(if n % 3 == 0 { "order.placed" } else { "order.paid" })
                    .aggregate_id((n % 7) as u64)
                    .payload(vec![(n % 251) as u8; len])
                    .build()
            })
            .collect();
        written += events.len();
        if state.is_multiple_of(5) {
            log.append_batch_sync(&events).unwrap();
        } else {
            log.append_batch(&events).unwrap();
        }
        if state.is_multiple_of(17) {
            // A later write time, so that restores to a time have somewhere to cut.
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

/// Every record of `log`: (offset, write time, payload).
pub fn records(log: &Log) -> Vec<(u64, u64, Vec<u8>)> {
    log.replay(log.start_offset())
        .map(|r| {
            let r = r.unwrap();
            (r.offset, r.write_timestamp_ms, r.payload.to_vec())
        })
        .collect()
}

/// Every record of the log in `dir`, opened read-only.
pub fn records_in(dir: &Path) -> Vec<(u64, u64, Vec<u8>)> {
    records(&Log::open_read_only(dir).unwrap())
}
