/**
 * The logging port: the subset of pino's API the core uses. The CLI passes a pino logger writing JSON
 * to stderr; tests and embedders may pass their own. Log lines must never go to stdout, which is the
 * protocol in stdio mode.
 */
export interface Logger {
  error(fields: Record<string, unknown>, message?: string): void;
  warn(fields: Record<string, unknown>, message?: string): void;
  info(fields: Record<string, unknown>, message?: string): void;
  debug(fields: Record<string, unknown>, message?: string): void;
  child(bindings: Record<string, unknown>): Logger;
  isLevelEnabled(level: string): boolean;
}

/** A logger that drops everything, for embedders that want silence. */
export const silentLogger: Logger = {
  error() {},
  warn() {},
  info() {},
  debug() {},
  child() {
    return silentLogger;
  },
  isLevelEnabled() {
    return false;
  },
};
