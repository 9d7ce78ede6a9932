//! ARNs of the local account: building them from names and reading names back from
//! target ARNs given to CreateJob.

use super::ServiceError;

/// Region and account the local service pretends to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub region: String,
    pub account_id: String,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            region: "us-east-1".to_owned(),
            account_id: "123456789012".to_owned(),
        }
    }
}

/// What a job target ARN points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Thing(String),
    Group(String),
}

impl Account {
    fn arn(&self, resource: &str) -> String {
        format!("arn:aws:iot:{}:{}:{resource}", self.region, self.account_id)
    }
    pub fn thing_arn(&self, thing: &str) -> String {
        self.arn(&format!("thing/{thing}"))
    }
    pub fn group_arn(&self, group: &str) -> String {
        self.arn(&format!("thinggroup/{group}"))
    }
    pub fn job_arn(&self, job_id: &str) -> String {
        self.arn(&format!("job/{job_id}"))
    }
    pub fn cert_arn(&self, certificate_id: &str) -> String {
        self.arn(&format!("cert/{certificate_id}"))
    }
    pub fn template_arn(&self, template_id: &str) -> String {
        self.arn(&format!("jobtemplate/{template_id}"))
    }
    pub fn target_arn(&self, t: &Target) -> String {
        match t {
            Target::Thing(n) => self.thing_arn(n),
            Target::Group(n) => self.group_arn(n),
        }
    }

    /// Reads a thing or thing-group ARN. Region and account are not compared: clients
    /// configured for another region still address the one local registry.
    pub fn parse_target(&self, arn: &str) -> Result<Target, ServiceError> {
        let bad =
            || ServiceError::InvalidRequest(format!("{arn:?} is not a thing or thing group ARN"));
        let parts: Vec<&str> = arn.splitn(6, ':').collect();
        let [a, partition, service, _region, _account, resource] = parts.as_slice() else {
            return Err(bad());
        };
        if *a != "arn" || !partition.starts_with("aws") || *service != "iot" {
            return Err(bad());
        }
        match resource.split_once('/') {
            Some(("thing", name)) if !name.is_empty() => Ok(Target::Thing(name.to_owned())),
            Some(("thinggroup", name)) if !name.is_empty() => Ok(Target::Group(name.to_owned())),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let a = Account::default();
        let t = a.thing_arn("t1");
        assert_eq!(t, "arn:aws:iot:us-east-1:123456789012:thing/t1");
        assert_eq!(a.parse_target(&t).unwrap(), Target::Thing("t1".into()));
        assert_eq!(
            a.parse_target("arn:aws:iot:eu-west-1:999:thinggroup/g")
                .unwrap(),
            Target::Group("g".into())
        );
        for bad in [
            "",
            "t1",
            "arn:aws:s3:::b/k",
            "arn:aws:iot:r:a:job/j",
            "arn:aws:iot:r:a:thing/",
        ] {
            assert!(a.parse_target(bad).is_err(), "{bad}");
        }
    }
}
