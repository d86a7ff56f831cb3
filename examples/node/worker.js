#!/usr/bin/env node
// A dasa external worker in Node.js with node-postgres (pg).
//
// Claims tasks of a queue and, for each, records its effect and completes it
// in one transaction. Connects with DATABASE_URL, else the PG* variables.
// usage: node worker.js QUEUE [--name NAME] [--batch N] [--poll SECONDS] [--drain SECONDS]
'use strict';
const os = require('node:os');
const { parseArgs } = require('node:util');
const { Client } = require('pg');

const LOST = 'DA008'; // the claim is gone (its lease ran out): another worker has the task now

const { values: opts, positionals: [queue] } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: 'string', default: `node-${os.hostname()}-${process.pid}` },
    batch: { type: 'string', default: '10' }, // most tasks per claim
    poll: { type: 'string', default: '1' }, // longest wait for a NOTIFY, in seconds
    drain: { type: 'string' }, // exit once the queue has been empty this many seconds
  },
});

// The example's work: an effect in this database, and the task's result.
async function handle(client, id, args) {
  if (args.fail) throw new Error('the task asked to fail');
  await client.query('INSERT INTO example_effects (task_id, worker) VALUES ($1, $2)', [id, opts.name]);
  return { square: args.n ** 2 };
}

async function run(client, { id, args, version }) {
  const unlessLost = (err) => { if (err.code !== LOST) throw err; };
  try {
    await client.query('BEGIN'); // the effect and the result commit together, or neither
    const value = await handle(client, id, args);
    await client.query('SELECT dasa.complete($1, $2, $3)', [id, version, JSON.stringify(value)]);
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK');
    if (err.code === LOST) return;
    // dasa retries the task after a backoff, or rejects it after its last attempt
    const error = JSON.stringify({ message: err.message });
    await client.query('SELECT dasa.fail($1, $2, $3)', [id, version, error]).catch(unlessLost);
  }
}

async function main() {
  const client = new Client({ connectionString: process.env.DATABASE_URL });
  let stopping = false, notified = false, wake = () => {};
  const stop = () => { stopping = true; wake(); };
  const sleep = (ms) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => { clearTimeout(timer); resolve(); };
  });
  process.on('SIGTERM', stop).on('SIGINT', stop);
  client.on('notification', () => { notified = true; wake(); });
  await client.connect();
  const { rows: [{ channel }] } = await client.query('SELECT dasa.queue_channel($1) AS channel', [queue]);
  await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
  let lastWork = Date.now();
  while (!stopping) {
    notified = false;
    const { rows: tasks } = await client.query(
      'SELECT id, args, version FROM dasa.claim($1, $2, $3)', [queue, opts.name, Number(opts.batch)]);
    for (const task of tasks) await run(client, task); // a signal lets the batch finish
    if (tasks.length) { lastWork = Date.now(); continue; }
    let wait = Number(opts.poll) * 1000;
    if (opts.drain !== undefined) {
      wait = Math.min(wait, lastWork + Number(opts.drain) * 1000 - Date.now());
      if (wait <= 0) break;
    }
    if (!notified && !stopping) await sleep(wait); // until a NOTIFY, the poll timeout or a signal
    wake = () => {};
  }
  await client.end();
}

main().catch((err) => { console.error(err); process.exit(1); });
