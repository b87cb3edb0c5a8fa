/**
 * Types for koa-websocket (CommonJS, no bundled types). Written here rather than taken from
 * @types/koa-websocket, which augments every Koa Context with a required `websocket` property and
 * so breaks the HTTP middleware typings (@koa/multer) across the server.
 */
declare module 'koa-websocket' {
  import type * as https from 'node:https';
  import type { Server } from 'node:http';

  import type Koa from 'koa';
  import type { WebSocket, WebSocketServer, ServerOptions } from 'ws';

  namespace websockify {
    /** The context of a WebSocket connection: a Koa context made from the upgrade request. */
    type SocketContext<StateT = Koa.DefaultState> = Koa.ParameterizedContext<StateT> & { websocket: WebSocket };
    type SocketMiddleware<StateT = Koa.DefaultState> = (ctx: SocketContext<StateT>, next: () => Promise<unknown>) => unknown;

    interface SocketServer<StateT = Koa.DefaultState> {
      /** Created by app.listen(). */
      server?: WebSocketServer;
      use(middleware: SocketMiddleware<StateT>): this;
    }

    type App<StateT = Koa.DefaultState, ContextT = Koa.DefaultContext> = Koa<StateT, ContextT> & {
      ws: SocketServer<StateT>;
      server?: Server;
    };
  }

  /** Wraps app.listen so that the HTTP server also accepts WebSocket upgrades (run by app.ws's middleware). */
  function websockify<StateT = Koa.DefaultState, ContextT = Koa.DefaultContext>(
    app: Koa<StateT, ContextT>,
    wsOptions?: ServerOptions,
    httpsOptions?: https.ServerOptions,
  ): websockify.App<StateT, ContextT>;

  export = websockify;
}
