// Shared by the two comparison servers: CGI environment, CGI output parsing,
// and an HTTP front end (node:http, optionally several processes via node:cluster).
import cluster from 'node:cluster';
import http from 'node:http';

// The CGI variables wasmlet's build_environment sets (RFC 3875 plus WAGI's X_*),
// so that each server hands the guest about the same work.
export function cgiEnv(req, port) {
  const url = new URL(req.url, `http://${req.headers.host || '127.0.0.1'}`);
  const env = {
    AUTH_TYPE: '', CONTENT_LENGTH: req.headers['content-length'] || '',
    CONTENT_TYPE: req.headers['content-type'] || '', GATEWAY_INTERFACE: 'CGI/1.1',
    PATH_INFO: url.pathname, PATH_TRANSLATED: url.pathname, QUERY_STRING: url.search.slice(1),
    REMOTE_ADDR: req.socket.remoteAddress || '', REMOTE_HOST: req.socket.remoteAddress || '',
    REMOTE_USER: '', REQUEST_METHOD: req.method, SCRIPT_NAME: '', SERVER_NAME: '127.0.0.1',
    SERVER_PORT: String(port), SERVER_PROTOCOL: `HTTP/${req.httpVersion}`, SERVER_SOFTWARE: 'bench',
    X_FULL_URL: url.href, X_MATCHED_ROUTE: '/', X_RAW_PATH_INFO: url.pathname,
  };
  for (const [name, value] of Object.entries(req.headers)) {
    if (name !== 'content-type' && name !== 'content-length' && name !== 'proxy') {
      env['HTTP_' + name.toUpperCase().replaceAll('-', '_')] = String(value);
    }
  }
  return env;
}

// A CGI response (RFC 3875 section 6): header lines, a blank line, the body.
export function sendCgi(res, output) {
  let end = output.indexOf('\n\n');
  let skip = 2;
  const crlf = output.indexOf('\r\n\r\n');
  if (crlf !== -1 && (end === -1 || crlf < end)) { end = crlf; skip = 4; }
  if (end === -1) { res.writeHead(502); res.end('bad CGI output\n'); return; }
  let status = 200;
  const headers = {};
  for (const line of output.subarray(0, end).toString('latin1').split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === 'status') status = parseInt(value, 10);
    else headers[name] = value;
  }
  const body = output.subarray(end + skip);
  headers['content-length'] = body.length;
  res.writeHead(status, headers);
  res.end(body);
}

// Listen on 127.0.0.1:port with `workers` processes sharing the port.
export function serve(port, workers, handler, label) {
  if (workers > 1 && cluster.isPrimary) {
    for (let i = 0; i < workers; i++) cluster.fork();
    const stop = () => { for (const w of Object.values(cluster.workers)) w.kill('SIGTERM'); process.exit(0); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    console.log(`${label}: ${workers} workers on http://127.0.0.1:${port}`);
    return;
  }
  const server = http.createServer({ keepAlive: true }, (req, res) => {
    if (req.url.startsWith('/.well-known/wasmlet/ready')) { res.end('ready\n'); return; }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => handler(req, res, Buffer.concat(chunks)));
  });
  server.keepAliveTimeout = 60000;
  server.listen(port, '127.0.0.1', () => {
    if (workers === 1) console.log(`${label}: serving on http://127.0.0.1:${port}`);
  });
  process.on('SIGTERM', () => process.exit(0)); // runs 'exit' handlers (scratch file removal)
}
