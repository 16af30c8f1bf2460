# The base of the kind node image built here (hack/kind/node-image.sh): kind's images/base/Dockerfile, as a
# plain Dockerfile for the legacy builder, on Debian bookworm with Debian's containerd, runc and CNI plugins
# (the same ones the project's local node has always run) instead of builds from source.
# One measure for these machines: root lacks CAP_SYS_RESOURCE, so no unit may lower its oom_score_adj
# (containerd's and journald's would not start); a drop-in sets it to 0 for each unit that asks for less.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG PAUSE_IMAGE
COPY files/ /
COPY runc-without-sys-resource /usr/local/bin/runc-without-sys-resource
RUN chmod 0755 /usr/local/bin/* /kind/bin/* \
    && apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o Dpkg::Options::=--force-confold \
       systemd conntrack iptables nftables ipset iproute2 ethtool util-linux mount kmod libseccomp2 pigz \
       bash ca-certificates curl jq procps containerd runc containernetworking-plugins \
    && rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* \
    && find /lib/systemd/system/sysinit.target.wants/ -name "systemd-tmpfiles-setup.service" -delete \
    && rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
       /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
       /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/* \
    && echo "ReadKMsg=no" >> /etc/systemd/journald.conf \
    && ln -sf /usr/lib/systemd/systemd /sbin/init \
    && ln -s /usr/bin/containerd /usr/local/bin/containerd \
    && mkdir -p /opt/cni/bin /etc/kubernetes/manifests \
    && ln -s /usr/lib/cni/* /opt/cni/bin/ \
    && sed -i "s#sandbox_image = .*#sandbox_image = \"${PAUSE_IMAGE}\"#" /etc/containerd/config.toml \
    && systemctl enable kubelet.service containerd.service undo-mount-hacks.service \
    && systemctl mask systemd-binfmt.service \
    && for unit in $(grep -l '^OOMScoreAdjust=-' /lib/systemd/system/*.service /etc/systemd/system/*.service); do \
         mkdir -p "/etc/systemd/system/${unit##*/}.d" \
         && printf '[Service]\nOOMScoreAdjust=0\n' > "/etc/systemd/system/${unit##*/}.d/10-oom-score-adj.conf"; \
       done \
    && ctr oci spec \
       | jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' \
       | jq 'del(.process.rlimits)' > /etc/containerd/cri-base.json
ENV container=docker
STOPSIGNAL SIGRTMIN+3
ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]
