package config

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// Hash is a digest of what must be the same on every host of a fleet
// (sites, apps, pools, limits, rules): the config less what belongs to
// one host, its listen addresses and its admin addresses. Two hosts with
// equal hashes serve alike; edgectl doctor --peer compares them.
func (c *Config) Hash() string {
	shared := *c
	shared.File = ""
	shared.Listen.HTTP, shared.Listen.HTTPS = nil, nil
	shared.Metrics = Metrics{}
	b, err := json.Marshal(&shared)
	if err != nil {
		return "unknown"
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}
