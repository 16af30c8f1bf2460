module visionops.local/node-images

go 1.24
