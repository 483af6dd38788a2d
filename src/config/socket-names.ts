import path from 'node:path';

/** `<dir>/<driver name>-reg.sock`, the name node-driver-registrar gives it. */
export function registrationSocketPath(dir: string, driverName: string): string {
  return path.join(dir, `${driverName}-reg.sock`);
}

/** The name a socket is bound under before it is linked to its real name (see bindOwnedSocket in csi/registration/socket.ts). */
export function bindName(sock: string): string {
  return path.join(path.dirname(sock), `.${path.basename(sock, '.sock')}.bind`);
}
