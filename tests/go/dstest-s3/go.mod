module dscluster.test/dstest-s3

go 1.25.0

require (
	github.com/aws/aws-sdk-go v1.55.8
	github.com/ipfs/go-datastore v0.9.2
)

require (
	github.com/google/uuid v1.6.0 // indirect
	github.com/ipfs/go-detect-race v0.0.1 // indirect
	github.com/jmespath/go-jmespath v0.4.0 // indirect
)
