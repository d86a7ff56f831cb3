// bench/resonate's SDK processes: the official Resonate TypeScript SDK on dasa.
//   node resonate.mjs worker GROUP            serve wf10 (10 ctx.run steps) for GROUP
//   node resonate.mjs throughput N INFLIGHT   N workflows through rpc, INFLIGHT at a time: "workflows/s cpu_s"
//   node resonate.mjs latency SAMPLES         one at a time: "p50_ms p99_ms"
//   node resonate.mjs rpcs                    requests one workflow makes from the worker (counted in it)
//   node resonate.mjs sdk_alone SAMPLES N     the SDK with its in-memory server, no database:
//                                             "p50_ms cpu_ms_per_workflow" (one at a time; N at 64 in flight)
//   node resonate.mjs round_trips SAMPLES K   K transactions in a row, each one durable INSERT: "p50_ms"
import { Resonate } from "@resonatehq/sdk";
import { PostgresNetwork } from "@resonatehq/sdk/postgres";
import pg from "pg";

const url = process.env.DATABASE_URL;

function step(ctx, i) {
  return i + 1;
}

function* wf10(ctx, x) {
  let v = x;
  for (let i = 0; i < 10; i++) v = yield* ctx.run(step, v);
  return v;
}

function connect(group) {
  return new Resonate({ network: new PostgresNetwork({ connectionString: url, group }), group });
}

async function worker(group) {
  const resonate = connect(group);
  resonate.register("wf10", wf10);
  process.on("SIGTERM", async () => {
    await resonate.stop();
    process.exit(0);
  });
  console.log(`ready ${process.pid}`);
  setInterval(() => {}, 1 << 30);
}

async function startOne(resonate, id) {
  const v = await resonate.rpc(id, "wf10", 0, resonate.options({ target: "wk" }));
  if (v !== 10) throw new Error(`workflow ${id} returned ${v}`);
}

async function throughput(n, inflight) {
  const resonate = connect("driver");
  const run = `t${Date.now().toString(36)}`;
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < n) await startOne(resonate, `${run}-${next++}`);
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage();
  console.log(`${(n / seconds).toFixed(1)} ${((cpu.user + cpu.system) / 1e6).toFixed(3)}`);
  await resonate.stop();
}

async function latency(samples) {
  const resonate = connect("driver");
  const run = `l${Date.now().toString(36)}`;
  const ms = [];
  for (let i = 0; i < samples + 5; i++) {
    const t = performance.now();
    await startOne(resonate, `${run}-${i}`);
    if (i >= 5) ms.push(performance.now() - t);
    await new Promise((r) => setTimeout(r, 20));
  }
  ms.sort((a, b) => a - b);
  const at = (p) => ms[Math.min(ms.length - 1, Math.ceil((ms.length * p) / 100) - 1)];
  console.log(`${at(50).toFixed(2)} ${at(99).toFixed(2)}`);
  await resonate.stop();
}

// One workflow run in this process (resonate.run), its requests counted by kind.
async function rpcs() {
  const network = new PostgresNetwork({ connectionString: url, group: "counting" });
  const counts = {};
  const send = network.send;
  network.send = (req) => {
    const kind = req.data?.action ? `${req.kind}(${req.data.action.kind})` : req.kind;
    counts[kind] = (counts[kind] ?? 0) + 1;
    return send(req);
  };
  const resonate = new Resonate({ network, group: "counting" });
  resonate.register("wf10", wf10);
  await resonate.run(`c${Date.now().toString(36)}-warm`, wf10, 0);
  for (const k of Object.keys(counts)) delete counts[k];
  await resonate.run(`c${Date.now().toString(36)}`, wf10, 0);
  console.log(Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", "));
  await resonate.stop();
}

// What is left when the database costs nothing: the same workflow run by the
// SDK against its in-memory server, in one process.
async function sdkAlone(samples, n) {
  const resonate = new Resonate({ group: "alone" });
  resonate.register("wf10", wf10);
  const run = `a${Date.now().toString(36)}`;
  const ms = [];
  for (let i = 0; i < samples + 5; i++) {
    const t = performance.now();
    if ((await resonate.run(`${run}-l${i}`, "wf10", 0)) !== 10) throw new Error("wrong result");
    if (i >= 5) ms.push(performance.now() - t);
  }
  ms.sort((x, y) => x - y);
  const cpu0 = process.cpuUsage();
  let next = 0;
  const lane = async () => {
    while (next < n) await resonate.run(`${run}-t${next++}`, "wf10", 0);
  };
  await Promise.all(Array.from({ length: 64 }, lane));
  const cpu = process.cpuUsage(cpu0);
  console.log(`${ms[Math.ceil(ms.length / 2) - 1].toFixed(2)} ${((cpu.user + cpu.system) / 1e3 / n).toFixed(2)}`);
  await resonate.stop();
  process.exit(0);
}

// What is left when the protocol costs nothing: K requests in a row, each a
// durable transaction of one INSERT (into bench_round_trips, a logged table),
// through the same client library.
async function roundTrips(samples, k) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const ms = [];
  for (let i = 0; i < samples; i++) {
    const t = performance.now();
    for (let j = 0; j < k; j++) await client.query("INSERT INTO bench_round_trips VALUES ($1, $2)", [`${i}-${j}`, { i, j }]);
    ms.push(performance.now() - t);
  }
  ms.sort((x, y) => x - y);
  console.log(ms[Math.ceil(ms.length / 2) - 1].toFixed(2));
  await client.end();
}

const [mode, a, b] = process.argv.slice(2);
if (mode === "worker") await worker(a);
else if (mode === "throughput") await throughput(Number(a), Number(b));
else if (mode === "latency") await latency(Number(a));
else if (mode === "rpcs") await rpcs();
else if (mode === "sdk_alone") await sdkAlone(Number(a), Number(b));
else if (mode === "round_trips") await roundTrips(Number(a), Number(b));
else {
  console.error("usage: resonate.mjs worker GROUP | throughput N INFLIGHT | latency SAMPLES | rpcs | sdk_alone SAMPLES N | round_trips SAMPLES K");
  process.exit(64);
}
