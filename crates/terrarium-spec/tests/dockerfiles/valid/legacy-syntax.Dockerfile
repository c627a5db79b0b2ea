FROM centos:7
MAINTAINER ops-team
ENV LANG en_US.UTF-8
ENV JAVA_HOME /usr/lib/jvm/java
LABEL vendor "Example, Inc."
ADD http://example.com/archive.tar.gz /opt/
RUN yum -y install java-1.8.0-openjdk && \
    yum clean all
EXPOSE 8080 8443
USER daemon
CMD /opt/app/bin/start.sh
