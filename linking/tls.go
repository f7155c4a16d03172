package linking

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// LoadTLS returns the mutual TLS configurations of the agents' server and
// client from a certificate, its key and the CA that signs every agent's
// certificate. Any certificate that CA signed is an agent's: peers are
// reached by pod IP, so names are not checked, only the chain (use a CA of
// the agents' own, as the Helm chart does).
func LoadTLS(certFile, keyFile, caFile string) (server, client *tls.Config, err error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("linking: certificate: %w", err)
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("linking: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("linking: no certificate in %s", caFile)
	}
	server = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    pool,
		MinVersion:   tls.VersionTLS13,
	}
	client = &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS13,
		// The chain is verified below, against pool; the name is not
		// (see above).
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verifyChain(pool),
	}
	return server, client, nil
}

// untrustedPeer starts the error of a peer certificate this agent refuses.
// gRPC keeps only the text of a failed handshake's error in the status of
// the calls it fails: the text is how resultOf tells this refusal (counted
// refused) from a handshake that failed for any other reason, such as a
// peer that answers garbage (counted error).
const untrustedPeer = "linking: untrusted peer certificate"

// verifyChain verifies that the peer's certificate chains to pool.
func verifyChain(pool *x509.CertPool) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 {
			return errors.New(untrustedPeer + ": none sent")
		}
		certs := make([]*x509.Certificate, len(raw))
		for i, b := range raw {
			c, err := x509.ParseCertificate(b)
			if err != nil {
				return fmt.Errorf("%s: %w", untrustedPeer, err)
			}
			certs[i] = c
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err != nil {
			return fmt.Errorf("%s: %w", untrustedPeer, err)
		}
		return nil
	}
}
