module hpp-csi-driver/bench/go-client

go 1.23.0

require (
	github.com/container-storage-interface/spec v1.12.0
	google.golang.org/grpc v1.69.2
)

require (
	golang.org/x/net v0.38.0 // indirect
	golang.org/x/sys v0.31.0 // indirect
	golang.org/x/text v0.23.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20241015192408-796eee8c2d53 // indirect
	google.golang.org/protobuf v1.35.1 // indirect
)
