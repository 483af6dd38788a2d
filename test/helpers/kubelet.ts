import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import path from 'node:path';
import { ROOT, type Msg } from './driver.js';

/**
 * What kubelet's plugin manager does with a socket in plugins_registry: GetInfo, then
 * NotifyRegistrationStatus with its verdict. The proto is loaded here on its own, as a client would.
 */
export interface KubeletClient {
  getInfo(): Promise<Msg>;
  notify(registered: boolean, error?: string): Promise<Msg>;
  close(): void;
}

const def = protoLoader.loadSync(path.join(ROOT, 'proto', 'pluginregistration.proto'), { keepCase: true, defaults: true });
const Registration = (grpc.loadPackageDefinition(def) as unknown as { pluginregistration: { Registration: grpc.ServiceClientConstructor } }).pluginregistration
  .Registration;

export function kubeletClient(socket: string): KubeletClient {
  const client = new Registration(`unix://${socket}`, grpc.credentials.createInsecure());
  const call = (method: string, req: Msg) =>
    new Promise<Msg>((resolve, reject) => {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const fn = (client as any)[method].bind(client);
      // kubelet allows 1 s for GetInfo and 5 s for the notification; 5 s for both on a busy test machine.
      fn(req, { deadline: Date.now() + 5_000 }, (err: grpc.ServiceError | null, res: Msg) => (err ? reject(err) : resolve(res)));
    });
  return {
    getInfo: () => call('GetInfo', {}),
    notify: (registered, error = '') => call('NotifyRegistrationStatus', { plugin_registered: registered, error }),
    close: () => client.close(),
  };
}
