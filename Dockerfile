# syntax=docker/dockerfile:1
# hpp-csi-driver image: node-local CSI driver for KubeVirt VM disks (see deploy/).
#   docker build -t hpp-csi-driver:latest .

# ---- build: compile TypeScript and the native addons (fs-ext, ours), then drop dev dependencies ----
FROM node:20-bookworm AS build
# node-gyp toolchain for the addons (the full node image has most of it; be explicit).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The repository's .npmrc sets nodedir=/usr (a distro Node); node images keep the headers under
# /usr/local/include/node. The environment overrides the project .npmrc.
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json .npmrc ./
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
FROM node:20-bookworm-slim
LABEL org.opencontainers.image.title="hpp-csi-driver" \
      org.opencontainers.image.description="Node-local CSI driver for KubeVirt VM disks (hostpath-provisioner drop-in)" \
      org.opencontainers.image.licenses="Apache-2.0"
# util-linux: blkid, fallocate, findmnt; mount: mount, umount, losetup; xfsprogs: mkfs.xfs, xfs_quota;
# e2fsprogs: mkfs.ext4, resize2fs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends util-linux mount xfsprogs e2fsprogs \
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
