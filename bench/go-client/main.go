// csi-cycle drives the driver's unix socket with grpc-go, the gRPC implementation kubelet and the CSI
// sidecars use, and times the CreateVolume -> NodePublishVolume -> NodeUnpublishVolume -> DeleteVolume
// cycle. bench/cycle.mjs runs it next to its own Node client and reads the JSON it prints.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type result struct {
	// Milliseconds per measured cycle: the whole cycle and each call.
	Cycle  []float64            `json:"cycle_ms"`
	PerRPC map[string][]float64 `json:"rpc_ms"`
	Null   []float64            `json:"null_rpc_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func stagingIf(staged bool, p string) string {
	if staged {
		return p
	}
	return ""
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}

func main() {
	endpoint := flag.String("endpoint", "", "unix:///path/to/csi.sock")
	pods := flag.String("pods", "", "directory under which per-volume target parents are made")
	pool := flag.String("pool", "", "storagePool parameter")
	prefix := flag.String("prefix", "go-cycle", "volume name prefix")
	cycles := flag.Int("cycles", 200, "measured cycles")
	warmup := flag.Int("warmup", 20, "cycles run before measuring")
	nullCalls := flag.Int("null-calls", 300, "GetPluginInfo calls timed after the cycles")
	mode := flag.String("mode", "cycle", "cycle | creates (-count with -inflight in flight) | deleteall (every listed volume) | waitlist (until ListVolumes returns -count)")
	count := flag.Int("count", 1000, "creates: volumes to create; waitlist: volumes to wait for")
	inflight := flag.Int("inflight", 16, "creates, deleteall: calls in flight")
	size := flag.Int64("size", 1<<30, "creates: bytes per volume")
	flag.Parse()
	if *mode == "waitlist" {
		waitList(*endpoint, *count)
		return
	}
	if *endpoint == "" || *pods == "" || *pool == "" {
		fmt.Fprintln(os.Stderr, "usage: csi-cycle -endpoint unix:///... -pods DIR -pool NAME [-cycles N] [-warmup N]")
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "connect:", err)
		os.Exit(1)
	}
	defer conn.Close()
	ctl := csi.NewControllerClient(conn)
	node := csi.NewNodeClient(conn)
	ident := csi.NewIdentityClient(conn)
	capability := &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
	res := result{PerRPC: map[string][]float64{}}
	ctx := context.Background()
	switch *mode {
	case "creates":
		creates(ctx, ctl, capability, *prefix, *pool, *count, *inflight, *size)
		return
	case "deleteall":
		deleteAll(ctx, ctl, *inflight)
		return
	case "cycle":
	default:
		fail("mode", fmt.Errorf("unknown mode %q", *mode))
	}
	// Stage and unstage as kubelet does when the driver asks for it (csi-driver-host-path does, HPP and this driver do not).
	staged := false
	if caps, err := node.NodeGetCapabilities(ctx, &csi.NodeGetCapabilitiesRequest{}); err == nil {
		for _, c := range caps.GetCapabilities() {
			if c.GetRpc().GetType() == csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME {
				staged = true
			}
		}
	}
	for i := 0; i < *warmup+*cycles; i++ {
		name := fmt.Sprintf("%s-%d", *prefix, i)
		parent := filepath.Join(*pods, name)
		if err := os.Mkdir(parent, 0o750); err != nil {
			fail("mkdir", err)
		}
		target := filepath.Join(parent, "mount")
		t0 := time.Now()
		cv, err := ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{
			Name:               name,
			CapacityRange:      &csi.CapacityRange{RequiredBytes: 1 << 30},
			VolumeCapabilities: []*csi.VolumeCapability{capability},
			Parameters:         map[string]string{"storagePool": *pool},
		})
		if err != nil {
			fail("CreateVolume", err)
		}
		t1 := time.Now()
		id := cv.GetVolume().GetVolumeId()
		staging := filepath.Join(parent, "globalmount")
		if staged {
			if err := os.Mkdir(staging, 0o750); err != nil {
				fail("mkdir", err)
			}
			if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: capability, VolumeContext: cv.GetVolume().GetVolumeContext()}); err != nil {
				fail("NodeStageVolume", err)
			}
		}
		if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: capability, VolumeContext: cv.GetVolume().GetVolumeContext(), StagingTargetPath: stagingIf(staged, staging)}); err != nil {
			fail("NodePublishVolume", err)
		}
		t2 := time.Now()
		if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			fail("NodeUnpublishVolume", err)
		}
		if staged {
			if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging}); err != nil {
				fail("NodeUnstageVolume", err)
			}
			if err := os.Remove(staging); err != nil {
				fail("rmdir", err)
			}
		}
		t3 := time.Now()
		if _, err := ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			fail("DeleteVolume", err)
		}
		t4 := time.Now()
		if err := os.Remove(parent); err != nil {
			fail("rmdir", err)
		}
		if i < *warmup {
			continue
		}
		res.Cycle = append(res.Cycle, ms(t4.Sub(t0)))
		res.PerRPC["CreateVolume"] = append(res.PerRPC["CreateVolume"], ms(t1.Sub(t0)))
		res.PerRPC["NodePublishVolume"] = append(res.PerRPC["NodePublishVolume"], ms(t2.Sub(t1)))
		res.PerRPC["NodeUnpublishVolume"] = append(res.PerRPC["NodeUnpublishVolume"], ms(t3.Sub(t2)))
		res.PerRPC["DeleteVolume"] = append(res.PerRPC["DeleteVolume"], ms(t4.Sub(t3)))
	}
	for i := 0; i < *nullCalls; i++ {
		t0 := time.Now()
		if _, err := ident.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}); err != nil {
			fail("GetPluginInfo", err)
		}
		res.Null = append(res.Null, ms(time.Since(t0)))
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fail("encode", err)
	}
}

type batchResult struct {
	CallMs []float64 `json:"call_ms"`
	WallMs float64   `json:"wall_ms"`
}

// inParallel runs job(0..n-1) with k in flight and times each call and the whole batch.
func inParallel(n, k int, job func(i int) error) batchResult {
	res := batchResult{CallMs: make([]float64, n)}
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	t0 := time.Now()
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				s := time.Now()
				if err := job(i); err != nil {
					once.Do(func() { firstErr = err })
				}
				res.CallMs[i] = ms(time.Since(s))
			}
		}()
	}
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	res.WallMs = ms(time.Since(t0))
	if firstErr != nil {
		fail("batch", firstErr)
	}
	return res
}

func creates(ctx context.Context, ctl csi.ControllerClient, capability *csi.VolumeCapability, prefix, pool string, n, k int, size int64) {
	res := inParallel(n, k, func(i int) error {
		_, err := ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{
			Name:               fmt.Sprintf("%s-%d", prefix, i),
			CapacityRange:      &csi.CapacityRange{RequiredBytes: size},
			VolumeCapabilities: []*csi.VolumeCapability{capability},
			Parameters:         map[string]string{"storagePool": pool},
		})
		return err
	})
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fail("encode", err)
	}
}

func listAll(ctx context.Context, ctl csi.ControllerClient, opts ...grpc.CallOption) ([]string, error) {
	var ids []string
	token := ""
	for {
		r, err := ctl.ListVolumes(ctx, &csi.ListVolumesRequest{StartingToken: token}, opts...)
		if err != nil {
			return nil, err
		}
		for _, e := range r.GetEntries() {
			ids = append(ids, e.GetVolume().GetVolumeId())
		}
		token = r.GetNextToken()
		if token == "" {
			return ids, nil
		}
	}
}

func deleteAll(ctx context.Context, ctl csi.ControllerClient, k int) {
	ids, err := listAll(ctx, ctl)
	if err != nil {
		fail("ListVolumes", err)
	}
	res := inParallel(len(ids), k, func(i int) error {
		_, err := ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: ids[i]})
		return err
	})
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fail("encode", err)
	}
}

// waitList polls the socket until a ListVolumes returns n volumes and prints the wall-clock time then
// (unix ns), for the caller to subtract the time it spawned the driver at. A fresh connection per try:
// grpc-go backs a failed dial off by a second, which would be measured as start-up.
func waitList(endpoint string, n int) {
	sock := strings.TrimPrefix(endpoint, "unix://")
	tries := 0
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		tries++
		if _, err := os.Stat(sock); err == nil {
			conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err == nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				ids, err := listAll(ctx, csi.NewControllerClient(conn))
				cancel()
				conn.Close()
				if err == nil && len(ids) >= n {
					fmt.Printf("{\"done_unix_ns\":%d,\"tries\":%d,\"volumes\":%d}\n", time.Now().UnixNano(), tries, len(ids))
					return
				}
			}
		}
		time.Sleep(time.Millisecond)
	}
	fail("waitlist", fmt.Errorf("no ListVolumes with %d volumes on %s in 60 s", n, endpoint))
}
