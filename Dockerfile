# syntax=docker/dockerfile:1
# hpp-csi-driver image: node-local CSI driver for KubeVirt VM disks (see deploy/).
#   docker build -t hpp-csi-driver:latest .
#
# Node 26 ("Lithium"), Active LTS since 26.13.0 (2026-10-28), on Debian 12 (bookworm), the release the
# e2e image (hack/e2e/build) is made from. Both stages are pinned to the same exact version tag; pin a
# digest as well (node:26.13.0-bookworm-slim@sha256:...) where the registry is reachable to read it.
# The code also runs on Node 20 (package.json engines), as the e2e image and CI do.

# ---- build: compile TypeScript and the native addons (fs-ext, ours), then drop dev dependencies ----
FROM node:26.13.0-bookworm AS build
# node-gyp toolchain for the addons (the full node image has most of it; be explicit).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# node-gyp compiles against the headers of the Node it runs under: the node image has them in
# /usr/local/include/node (no download).
ENV npm_config_nodedir=/usr/local
# Both native parts are optional at install (src/native/install.mjs); the image must have them.
ENV HPP_NATIVE=required
COPY package.json package-lock.json ./
# npm ci's install script builds our mount(2) addon (src/native) along with fs-ext.
COPY src/native ./src/native
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY cmd ./cmd
COPY src ./src
COPY proto ./proto
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: Node, the compiled driver, production node_modules, and the OS tools it runs ----
FROM node:26.13.0-bookworm-slim
LABEL org.opencontainers.image.title="hpp-csi-driver" \
      org.opencontainers.image.description="Node-local CSI driver for KubeVirt VM disks (hostpath-provisioner drop-in)" \
      org.opencontainers.image.licenses="Apache-2.0"
# Exactly the tools the code runs (test/manifests/image-tools.test.ts checks this list against src/):
# util-linux: blkid, fallocate, findmnt, flock; mount: mount, umount, losetup; xfsprogs: mkfs.xfs,
# xfs_quota; btrfs-progs: btrfs; coreutils: cp, chcon, mknod.
RUN apt-get update \
 && apt-get install -y --no-install-recommends util-linux mount xfsprogs btrfs-progs coreutils \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production
# package.json and proto/ sit side by side: the driver finds proto/csi.proto from package.json.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/proto ./proto
# Found from package.json like proto/; without it the driver falls back to spawning mount(8)/umount(8).
COPY --from=build /src/src/native/build/Release/hpp_mount.node ./src/native/build/Release/hpp_mount.node
ENTRYPOINT ["node", "dist/cmd/hpp-csi-driver.js"]
