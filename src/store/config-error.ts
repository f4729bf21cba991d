/** A store configuration that cannot be opened as given; its message is one line, for an operator. */
export class StoreConfigError extends Error {
  override readonly name = 'StoreConfigError';
}
