package main

import (
	"fmt"

	"github.com/ipfs/kubo/plugin"
	"github.com/ipfs/kubo/repo"
	"github.com/ipfs/kubo/repo/fsrepo"

	dstests3 "dscluster.test/dstest-s3"
)

// s3Plugin is a Kubo datastore plugin that takes go-ds-s3's spec (README,
// "Configuration"): region and bucket are required; accessKey, secretKey,
// regionEndpoint (path-style requests to that URL), rootDirectory and workers are read;
// go-ds-s3's other keys (sessionToken, credentialsEndpoint, keyTransform) are refused
// rather than ignored, since this plugin would not honour them.
type s3Plugin struct{}

var _ plugin.PluginDatastore = s3Plugin{}

func (s3Plugin) Name() string                   { return "dscluster-s3ds" }
func (s3Plugin) Version() string                { return "0.1.0" }
func (s3Plugin) Init(*plugin.Environment) error { return nil }
func (s3Plugin) DatastoreTypeName() string      { return "s3ds" }

func (s3Plugin) DatastoreConfigParser() fsrepo.ConfigFromMap {
	return parseSpec
}

func parseSpec(m map[string]any) (fsrepo.DatastoreConfig, error) {
	str := func(name string, required bool) (string, error) {
		v, ok := m[name]
		if !ok {
			if required {
				return "", fmt.Errorf("s3ds: no %s specified", name)
			}
			return "", nil
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("s3ds: %s is not a string", name)
		}
		return s, nil
	}
	known := map[string]bool{"type": true, "region": true, "bucket": true, "accessKey": true,
		"secretKey": true, "regionEndpoint": true, "rootDirectory": true, "workers": true}
	for name := range m {
		if !known[name] {
			return nil, fmt.Errorf("s3ds: %s is not supported by this plugin", name)
		}
	}
	var c dstests3.Config
	var err error
	for _, f := range []struct {
		name     string
		required bool
		to       *string
	}{
		{"region", true, &c.Region}, {"bucket", true, &c.Bucket},
		{"accessKey", false, &c.AccessKey}, {"secretKey", false, &c.SecretKey},
		{"regionEndpoint", false, &c.Endpoint}, {"rootDirectory", false, &c.RootDirectory},
	} {
		if *f.to, err = str(f.name, f.required); err != nil {
			return nil, err
		}
	}
	if v, ok := m["workers"]; ok {
		// JSON numbers arrive as float64
		w, ok := v.(float64)
		if !ok || w <= 0 || w != float64(int(w)) {
			return nil, fmt.Errorf("s3ds: workers must be a positive integer, not %v", v)
		}
		c.Workers = int(w)
	}
	return &s3Spec{c}, nil
}

type s3Spec struct {
	conf dstests3.Config
}

// DiskSpec is go-ds-s3's: what identifies the stored data (so `datastore_spec` matches
// what `dscfg ipfs` prints), not how to reach it.
func (s *s3Spec) DiskSpec() fsrepo.DiskSpec {
	return fsrepo.DiskSpec{"region": s.conf.Region, "bucket": s.conf.Bucket,
		"rootDirectory": s.conf.RootDirectory}
}

func (s *s3Spec) Create(string) (repo.Datastore, error) {
	return dstests3.New(s.conf)
}
