module periscope.example/tlsraw

go 1.18
