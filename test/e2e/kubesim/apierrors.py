"""API errors rendered as metav1.Status, the shape kubectl parses and prints."""


class APIError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self):
        st = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure',
              'message': self.message, 'reason': self.reason}
        if self.details is not None:
            st['details'] = self.details
        st['code'] = self.code
        return st


def not_found(resource, name):
    return APIError(404, 'NotFound', '%s "%s" not found' % (resource, name),
                    {'name': name, 'kind': resource})


def already_exists(resource, name):
    return APIError(409, 'AlreadyExists', '%s "%s" already exists' % (resource, name),
                    {'name': name, 'kind': resource})


# the API server's optimistic-lock message (k8s.io/apiserver registry store.go OptimisticLockErrorMsg)
OPTIMISTIC_LOCK_MSG = 'the object has been modified; please apply your changes to the latest version and try again'


def conflict(resource, name):
    return APIError(409, 'Conflict', 'Operation cannot be fulfilled on %s "%s": %s' % (
        resource, name, OPTIMISTIC_LOCK_MSG), {'name': name, 'kind': resource})


def bad_request(message):
    return APIError(400, 'BadRequest', message)


def invalid(kind, name, causes, group=''):
    """causes: list of (reason, field, body) where body is e.g. 'Required value'."""
    msgs = ['%s: %s' % (f, b) if f else b for _, f, b in causes]
    agg = msgs[0] if len(msgs) == 1 else '[' + ', '.join(msgs) + ']'
    details = {'name': name, 'kind': kind, 'causes': [{'reason': r, 'message': b, 'field': f} for r, f, b in causes]}
    if group:
        details['group'] = group
    return APIError(422, 'Invalid', '%s "%s" is invalid: %s' % (kind + ('.' + group if group else ''), name, agg),
                    details)


def forbidden(resource, name, message):
    prefix = '%s "%s"' % (resource, name) if name else resource
    return APIError(403, 'Forbidden', '%s is forbidden: %s' % (prefix, message),
                    {'name': name, 'kind': resource} if name else {'kind': resource})


def unauthorized():
    return APIError(401, 'Unauthorized', 'Unauthorized')


def method_not_allowed():
    return APIError(405, 'MethodNotAllowed', 'the server does not allow this method on the requested resource')
