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

func main() {
	endpoint := flag.String("endpoint", "", "unix:///path/to/csi.sock")
	pods := flag.String("pods", "", "directory under which per-volume target parents are made")
	pool := flag.String("pool", "", "storagePool parameter")
	prefix := flag.String("prefix", "go-cycle", "volume name prefix")
	cycles := flag.Int("cycles", 200, "measured cycles")
	warmup := flag.Int("warmup", 20, "cycles run before measuring")
	nullCalls := flag.Int("null-calls", 300, "GetPluginInfo calls timed after the cycles")
	flag.Parse()
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
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
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
		if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, TargetPath: target, VolumeCapability: capability}); err != nil {
			fail("NodePublishVolume", err)
		}
		t2 := time.Now()
		if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
			fail("NodeUnpublishVolume", err)
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
