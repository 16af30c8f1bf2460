module visionops.local/kind-pause

go 1.24
