// The Resonate TypeScript SDK, unchanged, on dasa: worker processes and a
// driver for test/scripts/86_resonate_sdk.sh.
//
//   node sdk.mjs worker GROUP        register the functions below and serve GROUP
//   node sdk.mjs run SCENARIO ID     run one workflow from a client; print {"result": ...}
//
// DATABASE_URL names the database (and the role); EFFECTS is a file every
// step appends a line to, so the test can count how often each one ran.
import { appendFileSync, readFileSync } from "node:fs";
import { Constant, Resonate } from "@resonatehq/sdk";
import { PostgresNetwork } from "@resonatehq/sdk/postgres";

const url = process.env.DATABASE_URL;
const effectsFile = process.env.EFFECTS;
const ttl = Number(process.env.TTL_MS ?? 60000);

function effect(line) {
  appendFileSync(effectsFile, `${line} ${process.pid}\n`);
}

function effectCount(prefix) {
  try {
    return readFileSync(effectsFile, "utf8").split("\n").filter((l) => l.startsWith(`${prefix} `)).length;
  } catch {
    return 0;
  }
}

// --- the functions the workers serve ----------------------------------------

function double(ctx, id, i) {
  effect(`steps:${id}:${i}`);
  return i * 2;
}

function* steps(ctx, n) {
  let sum = 0;
  for (let i = 0; i < n; i++) sum += yield* ctx.run(double, ctx.id, i);
  return sum;
}

function* remote(ctx, x) {
  effect(`remote:${x}`);
  return { x, squared: x * x, group: process.env.GROUP };
}

function* caller(ctx, x) {
  const answer = yield* ctx.rpc("remote", x, ctx.options({ target: "remote" }));
  return { ...answer, caller: process.env.GROUP };
}

function clock() {
  return Date.now();
}

function* sleeper(ctx, ms) {
  const before = yield* ctx.run(clock);
  yield* ctx.sleep(ms);
  const after = yield* ctx.run(clock);
  return after - before;
}

function* approval(ctx) {
  const decision = yield* ctx.promise();
  const value = yield* decision;
  return { decision: value, id: decision.id };
}

function flakyStep(ctx, id) {
  effect(`flaky:${id}`);
  if (effectCount(`flaky:${id}`) < 3) throw new Error(`attempt ${effectCount(`flaky:${id}`)} fails`);
  return effectCount(`flaky:${id}`);
}

function* flaky(ctx) {
  const attempts = yield* ctx.run(flakyStep, ctx.id, ctx.options({ retryPolicy: new Constant({ delay: 100, maxRetries: 5 }) }));
  return { attempts };
}

function* child(ctx, x) {
  effect(`child:${ctx.id}`);
  return x + 1;
}

function* parent(ctx, x) {
  const detached = yield* ctx.detached("child", x, ctx.options({ target: "wk" }));
  return { child: detached.id };
}

function announce(ctx, id, what) {
  effect(`${what}:${id}`);
}

async function slowStep(ctx, id) {
  effect(`slow-start:${id}`);
  await new Promise((resolve) => setTimeout(resolve, 4000));
  effect(`slow-end:${id}`);
  return "slow done";
}

function* survivor(ctx) {
  yield* ctx.run(announce, ctx.id, "first");
  const slow = yield* ctx.run(slowStep, ctx.id);
  yield* ctx.run(announce, ctx.id, "last");
  return { slow, finishedBy: process.pid };
}

function* tick(ctx, label) {
  effect(`tick:${label}:${ctx.id}`);
  return label;
}

const functions = { steps, remote, caller, sleeper, approval, flaky, child, parent, survivor, tick };

// --- processes -----------------------------------------------------------------

function connect(group) {
  const network = new PostgresNetwork({ connectionString: url, group });
  return new Resonate({ network, ttl, group });
}

async function worker(group) {
  process.env.GROUP = group;
  const resonate = connect(group);
  for (const [name, func] of Object.entries(functions)) resonate.register(name, func);
  const stop = async () => {
    await resonate.stop();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  console.log(JSON.stringify({ ready: group, pid: process.pid }));
  setInterval(() => {}, 1 << 30);
}

const scenarios = {
  steps: (r, id) => r.rpc(id, "steps", 10, r.options({ target: "wk" })),
  caller: (r, id) => r.rpc(id, "caller", 7, r.options({ target: "wk" })),
  sleeper: (r, id) => r.rpc(id, "sleeper", 1500, r.options({ target: "wk" })),
  approval: (r, id) => r.rpc(id, "approval", r.options({ target: "wk" })),
  flaky: (r, id) => r.rpc(id, "flaky", r.options({ target: "wk" })),
  parent: async (r, id) => {
    const started = await r.rpc(id, "parent", 41, r.options({ target: "wk" }));
    const handle = await r.get(started.child);
    return { ...started, childResult: await handle.result() };
  },
  survivor: (r, id) => r.rpc(id, "survivor", r.options({ target: "wk" })),
  checkout: (r, id) => r.rpc(id, "checkout", 42, r.options({ target: "shop" })),   // the README's worker
  schedule: async (r, id) => {
    await r.schedule(id, "*/5 * * * *", "tick", "scheduled", r.options({ target: "wk" }));
    return "created";
  },
};

async function run(scenario, id) {
  const resonate = connect("driver");
  const limit = Number(process.env.LIMIT_MS ?? 60000);
  const timer = setTimeout(() => {
    console.log(JSON.stringify({ error: `no result within ${limit} ms` }));
    process.exit(2);
  }, limit);
  try {
    const started = Date.now();
    const result = await scenarios[scenario](resonate, id);
    console.log(JSON.stringify({ result, ms: Date.now() - started }));
  } catch (e) {
    console.log(JSON.stringify({ error: String(e?.message ?? e) }));
    process.exitCode = 1;
  }
  clearTimeout(timer);
  await resonate.stop();
}

const [mode, a, b] = process.argv.slice(2);
if (mode === "worker") await worker(a);
else if (mode === "run") await run(a, b);
else {
  console.error("usage: sdk.mjs worker GROUP | run SCENARIO ID");
  process.exit(64);
}
