/**
 * The CSI messages and services as the handlers see them, from the generated src/csi/gen/ (never edit
 * that by hand: npm run gen:proto). Requests are the `__Output` types (what grpc-js hands over);
 * responses the input types.
 */
import type { ControllerDefinition } from './gen/csi/v1/Controller.js';
import type { IdentityDefinition } from './gen/csi/v1/Identity.js';
import type { NodeDefinition } from './gen/csi/v1/Node.js';
import type { ServiceHandlers } from './rpc.js';

export type IdentityHandlers = ServiceHandlers<IdentityDefinition>;
export type ControllerHandlers = ServiceHandlers<ControllerDefinition>;
export type NodeHandlers = ServiceHandlers<NodeDefinition>;

export type { ControllerDefinition, IdentityDefinition, NodeDefinition };
export type { ControllerClient } from './gen/csi/v1/Controller.js';
export type { CapacityRange__Output } from './gen/csi/v1/CapacityRange.js';
export type { ControllerServiceCapability, _csi_v1_ControllerServiceCapability_RPC_Type__Output as ControllerRpc } from './gen/csi/v1/ControllerServiceCapability.js';
export type { ControllerExpandVolumeRequest } from './gen/csi/v1/ControllerExpandVolumeRequest.js';
export type { ControllerExpandVolumeResponse__Output } from './gen/csi/v1/ControllerExpandVolumeResponse.js';
export type { ControllerGetVolumeResponse__Output } from './gen/csi/v1/ControllerGetVolumeResponse.js';
export type { CreateSnapshotRequest } from './gen/csi/v1/CreateSnapshotRequest.js';
export type { CreateSnapshotResponse__Output } from './gen/csi/v1/CreateSnapshotResponse.js';
export type { DeleteSnapshotRequest } from './gen/csi/v1/DeleteSnapshotRequest.js';
export type { DeleteSnapshotResponse__Output } from './gen/csi/v1/DeleteSnapshotResponse.js';
export type { ListSnapshotsRequest, ListSnapshotsRequest__Output } from './gen/csi/v1/ListSnapshotsRequest.js';
export type { ListSnapshotsResponse__Output, _csi_v1_ListSnapshotsResponse_Entry as ListSnapshotsEntry } from './gen/csi/v1/ListSnapshotsResponse.js';
export type { ListVolumesRequest__Output } from './gen/csi/v1/ListVolumesRequest.js';
export type { NodePublishVolumeRequest__Output } from './gen/csi/v1/NodePublishVolumeRequest.js';
export type { NodeServiceCapability, _csi_v1_NodeServiceCapability_RPC_Type__Output as NodeRpc } from './gen/csi/v1/NodeServiceCapability.js';
export type { Snapshot } from './gen/csi/v1/Snapshot.js';
export type { Topology, Topology__Output } from './gen/csi/v1/Topology.js';
export type { Volume } from './gen/csi/v1/Volume.js';
export type { VolumeCapability__Output } from './gen/csi/v1/VolumeCapability.js';
export type { VolumeUsage } from './gen/csi/v1/VolumeUsage.js';
export type { VolumeContentSource__Output } from './gen/csi/v1/VolumeContentSource.js';
