/**
 * `npm start`: read the configuration, start listening at once (/health answers 503 "loading"
 * while the model loads), shut down gracefully on SIGTERM / SIGINT. A failure to load the model
 * is fatal (exit 1) with the reason in the log; a failure while serving never is.
 */
import { pino } from 'pino';

import { createApp } from './core/app.js';
import { ConfigError, loadConfig } from './core/config.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(err.message);
      process.exit(2);
    }
    throw err;
  }
  const logger = pino({ level: config.logLevel, base: { service: 'sam3-server' } });
  const service = createApp({ config, logger });

  process.on('unhandledRejection', (reason) => logger.error({ err: reason }, 'unhandled promise rejection (kept running)'));
  process.on('uncaughtException', (err) => logger.error({ err }, 'uncaught exception (kept running)'));

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(130);
    }
    stopping = true;
    logger.info({ signal }, 'signal received');
    service
      .close()
      .then(() => process.exit(0))
      .catch((err: unknown) => {
        logger.error({ err }, 'error during shutdown');
        process.exit(1);
      });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));

  const server = await service.listen(config.port, config.host);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  logger.info({ host: config.host, port, checkpoint: config.checkpoint }, `listening on http://${config.host === '0.0.0.0' ? 'localhost' : config.host}:${port} (docs at /docs); loading the model`);

  try {
    await service.ready;
  } catch (err) {
    logger.fatal({ err }, 'cannot serve: the model did not load');
    await service.close().catch(() => undefined);
    process.exit(1);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
