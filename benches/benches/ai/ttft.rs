//! Time to first token: a client's first streamed byte through a started
//! gateway against the provider emulator directly, over one keep-alive
//! HTTP/1.1 connection per destination; after the criterion groups, the
//! medians of 200 interleaved requests to each and their differences.

use super::*;

/// One keep-alive HTTP/1.1 connection to `addr`.
async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(connection);
    sender
}

/// The API a destination speaks.
#[derive(Clone, Copy)]
enum Api {
    /// OpenAI chat completions: the emulator as OpenAI, and Weir.
    OpenAi,
    /// Anthropic's Messages API: the emulator as Anthropic.
    Anthropic,
}

impl Api {
    fn request(self, addr: SocketAddr, body: &Bytes) -> Request<Full<Bytes>> {
        let builder = Request::post(match self {
            Api::OpenAi => "/v1/chat/completions",
            Api::Anthropic => "/v1/messages",
        })
        .header("host", addr.to_string())
        .header("content-type", "application/json");
        let builder = match self {
            Api::OpenAi => builder.header("authorization", "Bearer sk-bench"),
            Api::Anthropic => builder
                .header("x-api-key", "sk-bench")
                .header("anthropic-version", "2023-06-01"),
        };
        builder.body(Full::new(body.clone())).expect("request")
    }

    /// Whether one server-sent event carries text of the answer.
    fn carries_text(self, event: &[u8]) -> bool {
        let Some(data) = event
            .split(|&b| b == b'\n')
            .find_map(|line| line.strip_prefix(b"data: "))
        else {
            return false;
        };
        let Ok(data) = serde_json::from_slice::<Value>(data) else {
            return false;
        };
        let text = match self {
            Api::OpenAi => &data["choices"][0]["delta"]["content"],
            Api::Anthropic => &data["delta"]["text"],
        };
        text.as_str().is_some_and(|text| !text.is_empty())
    }
}

/// Where the time-to-first-token benches send their streamed request.
struct Destination {
    name: &'static str,
    api: Api,
    addr: SocketAddr,
    body: Bytes,
    sender: SendRequest<Full<Bytes>>,
}

impl Destination {
    /// Send the streamed request and return the time until the first event
    /// carrying text arrived; then read the rest of the stream (untimed),
    /// so the connection is reused.
    async fn time_to_first_token(&mut self) -> Duration {
        let request = self.api.request(self.addr, &self.body);
        if self.sender.ready().await.is_err() {
            // Weir closes a connection idle past its header-read timeout,
            // as it may while the other destinations are measured.
            self.sender = connect(self.addr).await;
            self.sender.ready().await.expect("connection ready");
        }
        let started = Instant::now();
        let response = self.sender.send_request(request).await.expect("response");
        assert_eq!(response.status(), 200, "{}", self.name);
        let mut body = response.into_body();
        let mut pending: Vec<u8> = Vec::new();
        let mut first_token = None;
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame.expect("body").into_data() else {
                continue;
            };
            if first_token.is_some() {
                continue;
            }
            pending.extend_from_slice(&data);
            while let Some(end) = pending.windows(2).position(|w| w == b"\n\n") {
                if self.api.carries_text(&pending[..end]) {
                    first_token = Some(started.elapsed());
                    break;
                }
                pending.drain(..end + 2);
            }
        }
        first_token.unwrap_or_else(|| panic!("{}: no event carried text", self.name))
    }
}

/// The client's streamed request for `model`: the 2 KB conversation.
fn streamed_request(model: &str) -> Bytes {
    let mut request = chat_request();
    request["model"] = json!(model);
    request["stream"] = json!(true);
    Bytes::from(serde_json::to_vec(&request).expect("json"))
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub(super) fn ttft(c: &mut Criterion) {
    // Two workers, as the machine has two cores: the emulator's and the
    // gateway's tasks run there; the client runs on this thread.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let emulator = Emulator::new();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind emulator");
    let emulator_addr = listener.local_addr().expect("addr");
    rt.spawn(weir_emulator::serve(listener, emulator.clone()));
    let Loaded { _dir: dir, gateway } = load(&rt, emulator_addr);
    let running: RunningGateway = rt.block_on(weir::running::start(gateway)).expect("start gateway");
    let weir_addr = running.listeners[0];

    // What Weir sends Anthropic for the client's request, so the direct
    // Anthropic case gets the very same request.
    let to_anthropic = rt.block_on(async {
        let (plugin, slot) = shim_for(running.gateway(), "anthropic");
        let mut lease = plugin.lease(slot).await.expect("lease");
        let translated = lease.translate_request(slot, &streamed_request("anthropic")).await;
        match translated {
            Ok(Ok(request)) => Bytes::from(request.body),
            _ => panic!("the anthropic shim refused the streamed request"),
        }
    });
    let mut destinations: Vec<Destination> = [
        (
            "direct_emulator",
            Api::OpenAi,
            emulator_addr,
            streamed_request("gpt-bench"),
        ),
        ("through_weir", Api::OpenAi, weir_addr, streamed_request("openai")),
        ("direct_emulator_anthropic", Api::Anthropic, emulator_addr, to_anthropic),
        (
            "through_weir_anthropic",
            Api::OpenAi,
            weir_addr,
            streamed_request("anthropic"),
        ),
    ]
    .into_iter()
    .map(|(name, api, addr, body)| Destination {
        name,
        api,
        addr,
        body,
        sender: rt.block_on(connect(addr)),
    })
    .collect();
    // Warm the connections, the gateway's pool to the emulator and the
    // shims' instances.
    rt.block_on(async {
        for d in &mut destinations {
            for _ in 0..20 {
                d.time_to_first_token().await;
            }
        }
    });

    let mut group = c.benchmark_group("ttft");
    // Sockets and scheduling are noisier than in-process calls.
    group.measurement_time(Duration::from_secs(5));
    for d in &mut destinations {
        group.bench_function(d.name, |b| {
            b.iter_custom(|iters| {
                // The emulator keeps every request it saw.
                emulator.clear();
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += d.time_to_first_token().await;
                    }
                    total
                })
            })
        });
    }
    group.finish();

    // The figures to quote: medians of interleaved samples (the order
    // rotating each round), so drift in the machine's load and the work a
    // request leaves behind affect every destination alike.
    let rounds = 200;
    let n = destinations.len();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); n];
    emulator.clear();
    rt.block_on(async {
        for round in 0..rounds {
            for k in 0..n {
                let i = (round + k) % n;
                samples[i].push(destinations[i].time_to_first_token().await);
            }
        }
    });
    let medians: Vec<Duration> = samples.into_iter().map(median).collect();
    for (d, m) in destinations.iter().zip(&medians) {
        eprintln!("ttft/{}: median {:.1} µs of {rounds}", d.name, micros(*m));
    }
    for (weir, direct) in [(1, 0), (3, 2)] {
        eprintln!(
            "ttft: {} − {} = {:.1} µs added by Weir (difference of medians, {rounds} interleaved requests each)",
            destinations[weir].name,
            destinations[direct].name,
            micros(medians[weir]) - micros(medians[direct]),
        );
    }
    drop(destinations);
    rt.block_on(running.shutdown());
    drop(dir);
}
