// The native comparison: examples/hello/hello.c compiled with gcc -O2 and run as
// a classic CGI program, one fork+exec per request (child_process.execFile,
// asynchronous, so requests overlap), behind the same node:http front end as
// node_wasi_server.mjs.
//
//   node bench/native_cgi_server.mjs PROGRAM PORT [WORKERS]
import { execFile } from 'node:child_process';
import { cgiEnv, sendCgi, serve } from './_cgi.mjs';

const [program, portText, workersText] = process.argv.slice(2);
const port = Number(portText);
const workers = Number(workersText || 1);

function handle(req, res, body) {
  const child = execFile(program, [], { env: cgiEnv(req, port), encoding: 'buffer', maxBuffer: 1 << 20 },
    (error, stdout) => {
      if (error) { res.writeHead(500); res.end(String(error) + '\n'); return; }
      sendCgi(res, stdout);
    });
  child.stdin.on('error', () => {}); // the program may exit before reading its stdin
  child.stdin.end(body);
}

serve(port, workers, handle, 'native CGI');
