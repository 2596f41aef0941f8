// Command muninn-testdb drops the PostgreSQL databases tests created
// (storetest.URL) once a test run is over. Tests leave their databases in
// place because every DROP DATABASE forces an immediate checkpoint that
// stalls the server for the tests still running.
//
// Usage:
//
//	muninn-testdb -run ID     drop the run's databases (MUNINN_TEST_RUN=ID)
//	muninn-testdb -all        drop every test database nobody is connected to
//
// Without flags it drops those older than storetest.StaleAfter.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/muninn/muninn/server/store/storetest"
)

func main() {
	run := flag.String("run", "", "drop the databases of the test run with this MUNINN_TEST_RUN")
	all := flag.Bool("all", false, "drop every test database nobody is connected to")
	flag.Parse()
	cutoff := time.Now().Add(-storetest.StaleAfter)
	if *all {
		cutoff = time.Now().Add(time.Hour)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := storetest.DropDatabases(ctx, cutoff, *run)
	if err != nil {
		fmt.Fprintln(os.Stderr, "muninn-testdb:", err)
		os.Exit(1)
	}
	fmt.Printf("muninn-testdb: dropped %d test databases\n", n)
}
