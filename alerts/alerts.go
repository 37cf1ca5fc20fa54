package alerts

import _ "embed"

//go:embed failsoft.rules.yml
var rules []byte

// Rules returns the Prometheus rules file, for a program that writes it
// where its Prometheus reads rules.
func Rules() []byte { return append([]byte(nil), rules...) }
