'use strict';
// The web example: a small Node service, stdlib + one tiny dependency ("ms").
//
//   GET /health     200 {"status":"ok","version":APP_VERSION}            (no auth)
//   GET /version    APP_VERSION as text/plain                          (no auth)
//   GET /api/hello  200 {"message":"hello",...} with
//                   "Authorization: Bearer $WEB_AUTH_TOKEN", else 401 {"error":"unauthorized"}
//
// Environment: PORT (default 3000), HOST (default 127.0.0.1), APP_VERSION
// (default "dev"), WEB_AUTH_TOKEN (required: refuses to start without it).

const crypto = require('crypto');
const fs = require('fs');
const http = require('http');
const path = require('path');
const ms = require('ms');

const APP_VERSION = process.env.APP_VERSION || 'dev';
const TOKEN = process.env.WEB_AUTH_TOKEN || '';
const HOST = process.env.HOST || '127.0.0.1';
const PORT = Number.parseInt(process.env.PORT || '3000', 10);
const STARTED = Date.now();

function log(line) {
  process.stdout.write(`${new Date().toISOString()} ${line}\n`);
}

if (TOKEN.trim() === '') {
  process.stderr.write(
    'web: refusing to start: WEB_AUTH_TOKEN is unset or empty ' +
      '(without it every caller would be served)\n'
  );
  process.exit(1);
}
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) {
  process.stderr.write(`web: invalid PORT ${JSON.stringify(process.env.PORT)}\n`);
  process.exit(1);
}

let buildInfo = null;
try {
  buildInfo = JSON.parse(fs.readFileSync(path.join(__dirname, 'build-info.json'), 'utf8'));
} catch (_) {
  // running from src/ without a build: fine
}

const tokenDigest = crypto.createHash('sha256').update(TOKEN).digest();

function authorized(header) {
  if (typeof header !== 'string' || !header.startsWith('Bearer ')) return false;
  const given = header.slice('Bearer '.length).trim();
  // Compare fixed-length digests so timingSafeEqual never sees unequal lengths.
  const givenDigest = crypto.createHash('sha256').update(given).digest();
  return crypto.timingSafeEqual(givenDigest, tokenDigest);
}

function send(res, status, body, type = 'application/json') {
  const data = typeof body === 'string' ? body : JSON.stringify(body) + '\n';
  res.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(data),
  });
  res.end(data);
}

const server = http.createServer((req, res) => {
  res.on('finish', () => log(`${req.socket.remoteAddress} "${req.method} ${req.url}" ${res.statusCode}`));
  const url = req.url.split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return send(res, 405, { error: 'method not allowed' });
  }
  switch (url) {
    case '/health':
      return send(res, 200, { status: 'ok', version: APP_VERSION });
    case '/version':
      return send(res, 200, APP_VERSION, 'text/plain; charset=utf-8');
    case '/api/hello':
      if (!authorized(req.headers.authorization)) {
        return send(res, 401, { error: 'unauthorized' });
      }
      return send(res, 200, {
        message: 'hello',
        version: APP_VERSION,
        uptime: ms(Date.now() - STARTED),
        builtAt: buildInfo ? buildInfo.builtAt : null,
      });
    default:
      return send(res, 404, { error: 'not found' });
  }
});

server.keepAliveTimeout = 5000;
server.requestTimeout = 30000;

server.on('error', (err) => {
  process.stderr.write(`web: cannot listen on ${HOST}:${PORT}: ${err.message}\n`);
  process.exit(1);
});

server.listen(PORT, HOST, () => {
  const addr = server.address();
  log(`web ${APP_VERSION} listening on http://${addr.address}:${addr.port}`);
});

function shutdown(signal) {
  log(`received ${signal}, shutting down`);
  server.close(() => {
    log('stopped');
    process.exit(0);
  });
  // Idle keep-alive connections would hold close() open.
  if (typeof server.closeIdleConnections === 'function') server.closeIdleConnections();
  setTimeout(() => {
    if (typeof server.closeAllConnections === 'function') server.closeAllConnections();
  }, 5000).unref();
}

process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
