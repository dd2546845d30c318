// The comparison for wasmlet: the same WAGI module served by node:wasi, with a
// fresh WASI context and a fresh WebAssembly.Instance per request from a module
// compiled once at start-up (the V8 analogue of wasmlet's InstancePre).
// stdout goes to a per-process scratch file on /dev/shm, opened with O_TRUNC for each
// request and read back after the guest returns (what wasmlet does); requests are
// handled synchronously, one at a time per process.
//
//   node --no-warnings bench/node_wasi_server.mjs MODULE.wasm PORT [WORKERS]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { WASI } from 'node:wasi';
import { cgiEnv, sendCgi, serve } from './_cgi.mjs';

const [modulePath, portText, workersText] = process.argv.slice(2);
const port = Number(portText);
const workers = Number(workersText || 1);
const module = new WebAssembly.Module(fs.readFileSync(modulePath));

const scratch = path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), `node-wasi-${process.pid}.out`);
process.on('exit', () => fs.rmSync(scratch, { force: true }));

function handle(req, res, body) {
  const fd = fs.openSync(scratch, 'w+'); // O_TRUNC, offset 0
  let code;
  let output;
  try {
    // stdin is not wired: these runs only send GETs.
    const wasi = new WASI({ version: 'preview1', args: [''], env: cgiEnv(req, port), stdout: fd,
                            returnOnExit: true });
    const instance = new WebAssembly.Instance(module, wasi.getImportObject());
    code = wasi.start(instance);
    const size = fs.fstatSync(fd).size;
    output = Buffer.alloc(size);
    if (size) fs.readSync(fd, output, 0, size, 0);
  } finally {
    fs.closeSync(fd);
  }
  if (code !== 0) { res.writeHead(500); res.end('guest exited ' + code + '\n'); return; }
  sendCgi(res, output);
}

serve(port, workers, handle, 'node:wasi');
