import { isCoreMcpError } from '../core/errors.js';
import type { Store } from '../core/store.js';

/**
 * The same store, reporting each failed operation to `onError` with the operation's name (`commit`,
 * `loadDocument`, `ping`, ...). Typed, client-facing refusals a store may throw are not failures of
 * the store and are not reported. Every member of the store (credential methods too) stays reachable;
 * methods run on the original object, so private fields keep working.
 */
export function reportStoreErrors<S extends Store>(store: S, onError: (operation: string) => void): S {
  const wrapped = new Map<PropertyKey, unknown>();
  const failed = (operation: string, error: unknown) => {
    if (!isCoreMcpError(error) || error.spec.family === 'recovery' || error.spec.family === 'internal')
      onError(operation);
  };
  return new Proxy(store, {
    get(target, property) {
      const value = Reflect.get(target, property, target) as unknown;
      if (typeof value !== 'function' || typeof property !== 'string' || property === 'constructor')
        return value;
      let wrapper = wrapped.get(property);
      if (!wrapper) {
        const method = value as (...args: unknown[]) => unknown;
        wrapper = (...args: unknown[]) => {
          let result: unknown;
          try {
            result = method.apply(target, args);
          } catch (error) {
            failed(property, error);
            throw error;
          }
          if (result instanceof Promise) {
            return result.catch((error: unknown) => {
              failed(property, error);
              throw error;
            });
          }
          return result;
        };
        wrapped.set(property, wrapper);
      }
      return wrapper;
    },
  });
}
