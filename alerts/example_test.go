package alerts_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/failsoft/failsoft/alerts"
)

func ExampleRules() {
	dir, err := os.MkdirTemp("", "rules")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// rule_files: [".../failsoft.rules.yml"] in prometheus.yml
	if err := os.WriteFile(filepath.Join(dir, "failsoft.rules.yml"), alerts.Rules(), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Println("written")
	// Output: written
}
