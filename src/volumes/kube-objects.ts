import { invalidInput } from '../errors.js';

/*
 * The Kubernetes objects a CO names in its requests: the PVC a volume is made for (CreateVolume
 * parameters, csi-provisioner's --extra-create-metadata) and the pod a volume is published for
 * (NodePublishVolume volume_context, the CSIDriver's podInfoOnMount). Used to say in the logs, in the
 * volume record and in hppctl which claim a volume is for.
 */

/** A namespaced object: a PVC, a pod. */
export interface KubeObjectRef {
  namespace: string;
  name: string;
}

export const PARAM_PVC_NAME = 'csi.storage.k8s.io/pvc/name';
export const PARAM_PVC_NAMESPACE = 'csi.storage.k8s.io/pvc/namespace';
export const CONTEXT_POD_NAME = 'csi.storage.k8s.io/pod.name';
export const CONTEXT_POD_NAMESPACE = 'csi.storage.k8s.io/pod.namespace';

/** A namespace is a DNS-1123 label. */
const NAMESPACE_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
/** PVC and pod names are DNS-1123 subdomains. */
const OBJECT_NAME_RE = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/;

export function isNamespace(s: unknown): s is string {
  return typeof s === 'string' && NAMESPACE_RE.test(s);
}

export function isObjectName(s: unknown): s is string {
  return typeof s === 'string' && OBJECT_NAME_RE.test(s);
}

/** "namespace/name", as kubectl and the logs write it. */
export function refText(ref: KubeObjectRef): string {
  return `${ref.namespace}/${ref.name}`;
}

/**
 * The PVC CreateVolume parameters name, when they name one (both keys); INVALID_ARGUMENT for a value
 * that is no Kubernetes name, since it is kept in the volume record.
 */
export function pvcOfParameters(params: Record<string, string>): KubeObjectRef | undefined {
  const name = params[PARAM_PVC_NAME];
  const namespace = params[PARAM_PVC_NAMESPACE];
  if (name && !isObjectName(name)) throw invalidInput(`parameter ${PARAM_PVC_NAME} is not a Kubernetes object name: ${quoted(name)}`);
  if (namespace && !isNamespace(namespace)) throw invalidInput(`parameter ${PARAM_PVC_NAMESPACE} is not a Kubernetes namespace: ${quoted(namespace)}`);
  return name && namespace ? { namespace, name } : undefined;
}

/**
 * What a request names, for its log lines only: the PVC of CreateVolume parameters, the pod of a
 * NodePublishVolume volume_context. Never refuses; what is not a Kubernetes name is left out.
 */
export function namedObjects(req: { parameters?: unknown; volume_context?: unknown }): { pvc?: string; pod?: string } {
  const out: { pvc?: string; pod?: string } = {};
  const params = asMap(req.parameters);
  if (params && isObjectName(params[PARAM_PVC_NAME]) && isNamespace(params[PARAM_PVC_NAMESPACE])) {
    out.pvc = refText({ namespace: params[PARAM_PVC_NAMESPACE], name: params[PARAM_PVC_NAME] });
  }
  const context = asMap(req.volume_context);
  if (context && isObjectName(context[CONTEXT_POD_NAME]) && isNamespace(context[CONTEXT_POD_NAMESPACE])) {
    out.pod = refText({ namespace: context[CONTEXT_POD_NAMESPACE], name: context[CONTEXT_POD_NAME] });
  }
  return out;
}

function asMap(v: unknown): Record<string, unknown> | undefined {
  return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function quoted(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}
