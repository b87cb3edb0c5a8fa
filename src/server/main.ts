/**
 * The server process (`npm start` execs it; supervisors run `node dist/server/main.js` directly):
 * read the configuration, bind the port (a taken port exits 1 at once, before any model work), then
 * load the model while /health/ready answers 503, and shut down gracefully on SIGTERM / SIGINT
 * (core/app.ts close(): readiness withdrawn, SHUTDOWN_DELAY_MS, 503 to new requests while in-flight
 * ones finish, native memory freed, exit 0). A failure to load the model is fatal (one fatal log
 * line, exit 1); a failure while serving never is.
 */
import { type Logger, pino } from 'pino';

import { ErrorCode, Sam3Error } from '../index.js';
import { createApp } from './core/app.js';
import { ConfigError, type ServerConfig, loadConfig } from './core/config.js';

/** A signal repeated within this window is the same request delivered twice, not an insistence. */
const REPEAT_WINDOW_MS = 1000;

/** The fields of a fatal line: a Sam3Error's code and details (its stack says nothing to an operator), else the error itself. */
function fatalFields(err: unknown): Record<string, unknown> {
  if (err instanceof Sam3Error) return { code: err.code, details: err.details };
  return { err };
}

/** What to change when the model cannot load: for a device this machine lacks, where the device is set. */
function loadFailure(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof Sam3Error && err.code === ErrorCode.DeviceMismatch) {
    return `${message}; set IMAGE_MODEL_DEVICE (or DEVICES) to a device this machine has (auto, cpu or cuda:N), or give the process a GPU (a container needs --gpus and the NVIDIA container toolkit)`;
  }
  return message;
}

function listenFailure(err: NodeJS.ErrnoException, config: ServerConfig): string {
  const where = `${config.host}:${config.port}`;
  if (err.code === 'EADDRINUSE') return `cannot listen on ${where}: port ${config.port} is already in use; stop the other process or set SERVER_PORT to a free port`;
  if (err.code === 'EACCES') return `cannot listen on ${where}: permission denied for port ${config.port}; use a port above 1023 or set SERVER_PORT`;
  if (err.code === 'EADDRNOTAVAIL') return `cannot listen on ${where}: ${config.host} is not an address of this machine; set SERVER_HOST`;
  return `cannot listen on ${where}: ${err.message}`;
}

async function main(): Promise<void> {
  let config: ServerConfig;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      // No logger yet: LOG_LEVEL itself may be what is wrong.
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const logger: Logger = pino({ level: config.logLevel, base: { service: 'sam3-server' } });
  const fatal = (fields: Record<string, unknown>, message: string, code = 1): never => {
    logger.fatal(fields, message);
    process.exit(code);
  };
  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection (kept running)'));
  process.on('uncaughtException', (err) => logger.error({ err }, 'uncaught exception (kept running)'));

  const service = createApp({ config, logger, autoLoad: false });

  let first: { signal: string; at: number } | undefined;
  const stop = (signal: string) => {
    if (first) {
      // A terminal's Ctrl-C reaches every process of the group, and npm forwards it once more:
      // the same signal twice within moments. A later one means "now".
      if (signal === first.signal && Date.now() - first.at < REPEAT_WINDOW_MS) return;
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    first = { signal, at: Date.now() };
    logger.info({ signal, shutdown_delay_ms: config.shutdownDelayMs, shutdown_timeout_ms: config.shutdownTimeoutMs }, 'signal received: shutting down gracefully');
    service
      .close()
      .then(() => process.exit(0))
      .catch((err: unknown) => fatal({ err }, 'error during shutdown'));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  let port = config.port;
  try {
    const server = await service.listen(config.port, config.host);
    const address = server.address();
    if (typeof address === 'object' && address) port = address.port;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    fatal({ host: config.host, port: config.port, code: e.code }, listenFailure(e, config));
  }
  logger.info({ host: config.host, port, checkpoint: config.checkpoint }, `listening on http://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${port} (docs at /docs); loading the model`);

  try {
    await service.load();
  } catch (err) {
    if (first) return; // a signal came during the load: close() is under way and exits 0
    fatal({ checkpoint: config.checkpoint, ...fatalFields(err) }, `cannot serve: the model did not load: ${loadFailure(err)}`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
