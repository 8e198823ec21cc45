// Command kubo is Kubo's `ipfs` command with an S3 datastore plugin preloaded under
// go-ds-s3's datastore type "s3ds", so that a Kubo repo whose Datastore.Spec is what
// `dscfg ipfs` prints keeps its blocks in dscluster through the S3 gateway.
//
// go-ds-s3 itself cannot be built here: the Go module proxy this project builds from
// refuses to serve github.com/ipfs/go-ds-s3 (403 "This module version is not available"
// for its version list and every version). So the plugin (s3plugin.go) reads go-ds-s3's
// spec and hands it to the go-datastore over S3 of tests/go/dstest-s3 (s3ds.go), which
// makes go-ds-s3's requests with go-ds-s3's SDK. Everything else is Kubo as released.
package main

import (
	"os"

	"github.com/ipfs/kubo/cmd/ipfs/kubo"
	"github.com/ipfs/kubo/plugin/loader"
)

func init() {
	loader.Preload(s3Plugin{}) // Preload is for init only
}

func main() {
	os.Exit(kubo.Start(kubo.BuildDefaultEnv))
}
