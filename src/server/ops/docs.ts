/**
 * /openapi.json and Swagger UI at /docs. The UI's files come from the swagger-ui-dist package on
 * disk (no CDN), so the docs work on machines without internet access.
 */
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';

import Router from '@koa/router';

import { ApiCode, ApiError } from '../core/errors.js';
import type { AppContext, AppDeps, AppState } from '../core/context.js';

const require = createRequire(import.meta.url);
const uiDir = (require('swagger-ui-dist') as { getAbsoluteFSPath(): string }).getAbsoluteFSPath();

/** The only files served, with their types: a fixed list, so no path from a URL reaches the disk. */
const ASSETS: Record<string, string> = {
  'swagger-ui.css': 'text/css; charset=utf-8',
  'swagger-ui-bundle.js': 'application/javascript; charset=utf-8',
  'swagger-ui-standalone-preset.js': 'application/javascript; charset=utf-8',
  'favicon-32x32.png': 'image/png',
  'favicon-16x16.png': 'image/png',
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>SAM 3 inference server: API docs</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script>
    window.ui = SwaggerUIBundle({
      url: '/openapi.json',
      dom_id: '#swagger-ui',
      deepLinking: true,
      presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
      layout: 'StandaloneLayout'
    });
  </script>
</body>
</html>
`;

export function docsRoutes(deps: AppDeps): Router<AppState, AppContext> {
  const router = new Router<AppState, AppContext>();

  router.get('/openapi.json', (ctx) => {
    ctx.body = deps.openapi();
  });

  router.get('/docs', (ctx) => {
    ctx.type = 'text/html; charset=utf-8';
    ctx.body = PAGE;
  });

  router.get('/docs/:file', (ctx) => {
    const file = ctx.params.file ?? '';
    const type = Object.hasOwn(ASSETS, file) ? ASSETS[file] : undefined;
    if (!type) throw new ApiError(404, ApiCode.NotFound, `no documentation file '${file}'; open /docs`);
    ctx.type = type;
    ctx.set('Cache-Control', 'public, max-age=86400');
    ctx.body = createReadStream(path.join(uiDir, file));
  });

  return router;
}
