/** Told of every finished call (method, status name, duration) by the request wrapper. */
export interface RpcObserver {
  observe(method: string, code: string, seconds: number): void;
}
