/**
 * The operator dashboard's files: the page at `/` and its assets under /assets/, an explicit list read once at
 * start (a missing file stops the start instead of a blank page later). Nothing else on disk is reachable from here.
 * The page holds no data: it asks for the admin token and reads GET /api/overview with it.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { route } from '../openapi/index.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const WEB = path.join(ROOT, 'web');
const requireFrom = createRequire(import.meta.url);

/**
 * script-src 'self' and no 'unsafe-eval': the page runs only the files below. Alpine is its CSP build, which parses the
 * page's x- expressions itself instead of compiling them with the Function constructor. Styles from style.css only;
 * inline style attributes are refused, the scripts set styles through the DOM, which CSP allows.
 */
const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

interface Asset {
  readonly route: string;
  readonly file: string;
  readonly type: string;
}

const ASSETS: readonly Asset[] = [
  { route: '/', file: path.join(WEB, 'index.html'), type: 'text/html; charset=utf-8' },
  { route: '/assets/app.js', file: path.join(WEB, 'app.js'), type: 'text/javascript; charset=utf-8' },
  { route: '/assets/style.css', file: path.join(WEB, 'style.css'), type: 'text/css; charset=utf-8' },
  // The CSP build's browser bundle: it starts Alpine by itself once loaded, as the standard cdn build does.
  {
    route: '/assets/alpine.min.js',
    file: requireFrom.resolve('@alpinejs/csp/dist/cdn.min.js'),
    type: 'text/javascript; charset=utf-8',
  },
  // chart.js exports no subpath for its UMD build: it sits beside the CommonJS entry.
  {
    route: '/assets/chart.umd.min.js',
    file: path.join(path.dirname(requireFrom.resolve('chart.js')), 'chart.umd.min.js'),
    type: 'text/javascript; charset=utf-8',
  },
];

// eslint-disable-next-line @typescript-eslint/require-await -- a Fastify plugin: registration waits for the promise it returns
export async function dashboardRoutes(app: FastifyInstance): Promise<void> {
  for (const asset of ASSETS) {
    const body = fs.readFileSync(asset.file);
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"`;
    route(app, {
      method: 'GET',
      path: asset.route,
      tag: 'dashboard',
      auth: 'none',
      summary: asset.route === '/' ? 'The operator dashboard (it asks for the admin token)' : 'A file of the dashboard',
      headers: { 'if-none-match': 'The ETag of the copy held: 304 when it is still this one.' },
      responses: {
        200: {
          description: 'The file.',
          mediaType: asset.type.split(';')[0],
          headers: { etag: 'Its version.' },
        },
        304: { description: 'The copy held is this one.' },
      },
      handler: async (_input, request, reply) => {
        reply
          .header('content-security-policy', DASHBOARD_CSP)
          .header('x-content-type-options', 'nosniff')
          .header('referrer-policy', 'no-referrer')
          .header('x-frame-options', 'DENY')
          // Revalidated on each load, so a new version is picked up at once; the ETag makes that a 304.
          .header('cache-control', 'no-cache')
          .header('etag', etag);
        if (request.headers['if-none-match'] === etag) return reply.code(304).send();
        return reply.type(asset.type).send(body);
      },
    });
  }
}
